package report

import (
	"bytes"
	"fmt"
	"image/color"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/darwinlm/darwinlm-go/experiment"
	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
)

var palette = []color.Color{
	color.RGBA{31, 119, 180, 255}, color.RGBA{255, 127, 14, 255}, color.RGBA{44, 160, 44, 255},
	color.RGBA{214, 39, 40, 255}, color.RGBA{148, 103, 189, 255}, color.RGBA{140, 86, 75, 255},
}

// Figures writes base-fitness.{png,svg} (the best fitness of each
// generation, per search stage) and base-levels.{png,svg} (per-module levels
// of every pruned model, searched beside uniform) when the results hold them.
func Figures(base string, res *experiment.Results) error {
	if len(res.Search) > 0 {
		p := plot.New()
		p.Title.Text = "Search: fitness of the selected parent per generation"
		p.X.Label.Text = "generation"
		p.Y.Label.Text = "fitness (last selection stage)"
		stages := map[string]map[int64]float64{}
		var names []string
		for _, r := range res.Search {
			if !r.Best {
				continue
			}
			if stages[r.Stage] == nil {
				stages[r.Stage] = map[int64]float64{}
				names = append(names, r.Stage)
			}
			stages[r.Stage][r.Generation] = r.Fitness
		}
		sort.Strings(names)
		for i, n := range names {
			var gens []int64
			for g := range stages[n] {
				gens = append(gens, g)
			}
			sort.Slice(gens, func(a, b int) bool { return gens[a] < gens[b] })
			xy := make(plotter.XYs, len(gens))
			for j, g := range gens {
				xy[j] = plotter.XY{X: float64(g), Y: stages[n][g]}
			}
			l, err := plotter.NewLine(xy)
			if err != nil {
				return err
			}
			l.Color = palette[i%len(palette)]
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(n, l)
		}
		p.Legend.Top = true
		if err := save(p, base+"-fitness"); err != nil {
			return err
		}
	}
	if len(res.Levels) > 0 {
		p := plot.New()
		p.Title.Text = "Per-module levels (attention and MLP of each layer)"
		p.Y.Label.Text = "level (0 = dense, top = removed)"
		stages := map[string][]experiment.LevelRow{}
		var names []string
		for _, r := range res.Levels {
			if stages[r.Stage] == nil {
				names = append(names, r.Stage)
			}
			stages[r.Stage] = append(stages[r.Stage], r)
		}
		sort.Strings(names)
		w := vg.Points(60 / float64(len(names)+1))
		var labels []string
		for i, n := range names {
			rows := stages[n]
			sort.SliceStable(rows, func(a, b int) bool {
				if rows[a].Layer != rows[b].Layer {
					return rows[a].Layer < rows[b].Layer
				}
				return rows[a].Kind < rows[b].Kind
			})
			vals := make(plotter.Values, len(rows))
			if i == 0 {
				labels = make([]string, len(rows))
			}
			for j, r := range rows {
				vals[j] = float64(r.Level)
				if i == 0 {
					labels[j] = fmt.Sprintf("L%d %s", r.Layer, r.Kind)
				}
			}
			b, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return err
			}
			b.Color = palette[i%len(palette)]
			b.LineStyle.Width = 0
			b.Offset = w * vg.Length(float64(i)-float64(len(names)-1)/2)
			p.Add(b)
			p.Legend.Add(n, b)
		}
		p.NominalX(labels...)
		top := int32(0)
		for _, r := range res.Levels {
			top = max(top, r.Level)
		}
		p.Y.Min, p.Y.Max = 0, float64(top)+2 // room for the legend above the bars
		p.X.Min, p.X.Max = -0.6, float64(len(labels))-0.4
		p.Legend.Top = true
		if err := save(p, base+"-levels"); err != nil {
			return err
		}
	}
	return nil
}

func save(p *plot.Plot, base string) error {
	const wd, ht = 7 * vg.Inch, 4 * vg.Inch
	sv := vgsvg.New(wd, ht)
	p.Draw(draw.New(sv))
	var b bytes.Buffer
	if _, err := sv.WriteTo(&b); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(base+".svg", b.Bytes()); err != nil {
		return err
	}
	img := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(wd, ht), vgimg.UseDPI(96))}
	p.Draw(draw.New(img))
	b.Reset()
	if _, err := img.WriteTo(&b); err != nil {
		return err
	}
	return atomicfile.WriteFile(base+".png", b.Bytes())
}
