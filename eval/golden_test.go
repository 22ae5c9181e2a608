package eval

import (
	"os"
	"strings"
	"testing"
)

// needMirror skips a test when the offline hub mirror is not configured.
// A relative DARWINLM_HUB_MIRROR (CI: ../shared/hf) is resolved against the
// repository root by package hub.
func needMirror(t testing.TB) {
	t.Helper()
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	t.Setenv("DARWINLM_OFFLINE", "1")
}

type golden struct {
	doc      int
	contexts []string // one per choice; a single entry means "same for all"
	conts    []string
	gold     int
}

func buildDocs(t *testing.T, task string, shots, limit int) []Instance {
	t.Helper()
	reg, err := LoadRegistry("")
	if err != nil {
		t.Fatal(err)
	}
	tk, sub, err := reg.Get(task)
	if err != nil {
		t.Fatal(err)
	}
	ins, err := tk.Build(BuildOptions{NumFewshot: shots, Limit: limit, Subset: sub})
	if err != nil {
		t.Fatal(err)
	}
	return ins
}

func checkGolden(t *testing.T, task string, shots int, want []golden) {
	t.Helper()
	ins := buildDocs(t, task, shots, 0)
	for _, g := range want {
		in := ins[g.doc]
		if in.DocID != g.doc {
			t.Fatalf("%s: doc order: instance %d has doc id %d", task, g.doc, in.DocID)
		}
		ctxs := g.contexts
		if len(ctxs) == 1 {
			for len(ctxs) < len(g.conts) {
				ctxs = append(ctxs, g.contexts[0])
			}
		}
		if len(in.Contexts) != len(ctxs) {
			t.Fatalf("%s doc %d: %d contexts, want %d", task, g.doc, len(in.Contexts), len(ctxs))
		}
		for i := range ctxs {
			if in.Contexts[i] != ctxs[i] {
				t.Errorf("%s doc %d context %d:\n got %q\nwant %q", task, g.doc, i, in.Contexts[i], ctxs[i])
			}
			if in.Conts[i] != g.conts[i] {
				t.Errorf("%s doc %d continuation %d:\n got %q\nwant %q", task, g.doc, i, in.Conts[i], g.conts[i])
			}
		}
		if in.Gold != g.gold {
			t.Errorf("%s doc %d: gold %d, want %d", task, g.doc, in.Gold, g.gold)
		}
	}
}

// piqa.yaml: doc_to_text "Question: {{goal}}\nAnswer:", choices [sol1, sol2],
// target label; continuation = target_delimiter " " + choice.
func TestGoldenPIQA(t *testing.T) {
	needMirror(t)
	checkGolden(t, "piqa", 0, []golden{
		{0, []string{"Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"},
			[]string{" Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you will also need to supply it with a water bottle and a food dish.",
				" Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, you will also need to supply it with a water bottle and a food dish."}, 0},
		// Trailing and double spaces of the solutions are kept verbatim.
		{1, []string{"Question: dresser\nAnswer:"}, []string{" replace drawer with bobby pin ", " finish, woodgrain with  bobby pin "}, 1},
	})
}

// arc_easy / arc_challenge: "Question: {{question}}\nAnswer:", choices
// choices.text, target choices.label.index(answerKey).
func TestGoldenARC(t *testing.T) {
	needMirror(t)
	checkGolden(t, "arc_easy", 0, []golden{
		{0, []string{"Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:"},
			[]string{" Sunlight is the source of energy for nearly all ecosystems.", " Most ecosystems are found on land instead of in water.",
				" Carbon dioxide is more available than other gases.", " The producers in all ecosystems are plants."}, 0},
		{1, []string{"Question: Which piece of safety equipment is used to keep mold spores from entering the respiratory system?\nAnswer:"},
			[]string{" safety goggles", " breathing mask", " rubber gloves", " lead apron"}, 1},
	})
	checkGolden(t, "arc_challenge", 0, []golden{
		{0, []string{"Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?\nAnswer:"},
			[]string{" Planetary density will decrease.", " Planetary years will become longer.", " Planetary days will become shorter.", " Planetary gravity will become stronger."}, 2},
	})
	// Digit answer keys (1-4) are looked up in choices.label too.
	ins := buildDocs(t, "arc_easy", 0, 0)
	_, rows, _, err := ReadRows("hf-dataset:allenai/ai2_arc/ARC-Easy/test")
	if err != nil {
		t.Fatal(err)
	}
	digits := 0
	for i, r := range rows {
		if k := r["answerKey"].(string); k >= "1" && k <= "9" {
			digits++
			if want := int(k[0] - '1'); ins[i].Gold != want {
				t.Fatalf("doc %d answerKey %s: gold %d", i, k, ins[i].Gold)
			}
		}
	}
	if digits != 97 {
		t.Fatalf("%d digit answer keys, want 97", digits)
	}
}

// hellaswag: query = preprocess(activity_label + ": " + ctx_a + " " +
// ctx_b.capitalize()), choices = preprocess(endings), gold = int(label).
func TestGoldenHellaSwag(t *testing.T) {
	needMirror(t)
	checkGolden(t, "hellaswag", 0, []golden{
		// ctx_b "he" → "He".
		{0, []string{"Roof shingle removal: A man is sitting on a roof. He"},
			[]string{" is using wrap to wrap a pair of skis.", " is ripping level tiles off.", " is holding a rubik's cube.", " starts pulling up roofing on a roof."}, 3},
		{1, []string{"Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. The lady"},
			[]string{" swings and lands in her arms.", " pulls the barbell forward.", " pulls a rope attached to the barbell.", " stands and lifts the weight over her head."}, 3},
		// Empty ctx_b: the trailing space disappears in strip().
		{1692, []string{"Layup drill in basketball: Young men play basketball in an indoor court and \"how to do a spin move in basketball\" overlays the video. \" power dribble"},
			[]string{" , step over swing \" overlay lays the video and the still of the is about to make a ground slide.", " \" overlays video of the players demonstrating the steps of doing it.",
				" \" children are shown from several angles as they run down the court to serve.",
				" dribble back and forth, then dribble on the left hand to click when the ball's moved to go on the left hand side until a stripe is pushed and, the goalkeeper is perplexed."}, 1},
	})
	// The cleaning rules themselves (utils.py preprocess).
	if got := hellaswagClean(" How to x [title] Do y. [step] Then  z [header] "); got != "How to x. Do y. Then z " { // strip happens before the bracket removal
		t.Fatalf("preprocess: %q", got)
	}
	if got := pyCapitalize("then, the man writes over the DVD"); got != "Then, the man writes over the dvd" {
		t.Fatalf("capitalize: %q", got)
	}
}

// boolq: "{{passage}}\nQuestion: {{question}}?\nAnswer:", choices no/yes.
func TestGoldenBoolQ(t *testing.T) {
	needMirror(t)
	ins := buildDocs(t, "boolq", 0, 3)
	c := ins[0].Contexts[0]
	if !strings.HasPrefix(c, "Ethanol fuel -- All biomass goes through at least some of these steps:") ||
		!strings.HasSuffix(c, "to create 8 from the ethanol. Energy balance estimates are not easily produced, thus numerous such reports have been generated that are contradictory. For instance, a separate survey reports that production of ethanol from sugarcane, which requires a tropical climate to grow productively, returns from 8 to 9 units of energy for each unit expended, as compared to corn, which only returns about 1.34 units of fuel energy for each unit of energy expended. A 2006 University of California Berkeley study, after analyzing six separate studies, concluded that producing ethanol from corn uses much less petroleum than producing gasoline.\nQuestion: does ethanol take more energy make that produces?\nAnswer:") {
		t.Errorf("boolq doc 0 context: %q", c)
	}
	for i, g := range []int{0, 1, 1} {
		if ins[i].Gold != g || ins[i].Conts[0] != " no" || ins[i].Conts[1] != " yes" {
			t.Errorf("boolq doc %d: gold %d conts %q", i, ins[i].Gold, ins[i].Conts)
		}
	}
	if !strings.HasSuffix(ins[1].Contexts[0], "\nQuestion: is house tax and property tax are same?\nAnswer:") {
		t.Errorf("boolq doc 1 context: %q", tail(ins[1].Contexts[0], 80))
	}
}

// winogrande: partial scoring; contexts = sentence[:blank] + option, shared
// continuation " " + sentence[blank+1:].strip(); gold {"1":0,"2":1}[answer].
func TestGoldenWinoGrande(t *testing.T) {
	needMirror(t)
	checkGolden(t, "winogrande", 0, []golden{
		{0, []string{"Sarah was a much better surgeon than Maria so Sarah", "Sarah was a much better surgeon than Maria so Maria"},
			[]string{" always got the easier cases.", " always got the easier cases."}, 1},
		{1, []string{"Sarah was a much better surgeon than Maria so Sarah", "Sarah was a much better surgeon than Maria so Maria"},
			[]string{" always got the harder cases.", " always got the harder cases."}, 0},
	})
}

// sciq: "{{support.lstrip()}}\nQuestion: {{question}}\nAnswer:", choices
// [distractor1, distractor2, distractor3, correct_answer], target 3.
func TestGoldenSciQ(t *testing.T) {
	needMirror(t)
	checkGolden(t, "sciq", 0, []golden{
		// Empty support: the context starts with "\nQuestion: ".
		{35, []string{"\nQuestion: In what type of animals may a body cavity be present or absent?\nAnswer:"},
			[]string{" nonvascular", " bicellular", " vertebrate", " triploblastic"}, 3},
	})
	ins := buildDocs(t, "sciq", 0, 2)
	if c := ins[0].Contexts[0]; !strings.HasPrefix(c, "Oxidants and Reductants Compounds that are capable of accepting electrons, such as O 2 or F2,") ||
		!strings.HasSuffix(c, "Equation 3.30 Saylor URL: http://www. saylor. org/books.\nQuestion: Compounds that are capable of accepting electrons, such as o 2 or f2, are called what?\nAnswer:") {
		t.Errorf("sciq doc 0: %q", c)
	}
	if got := strings.Join(ins[0].Conts, "|"); got != " Oxygen| residues| antioxidants| oxidants" || ins[0].Gold != 3 {
		t.Errorf("sciq doc 0 conts %q gold %d", got, ins[0].Gold)
	}
}

// logiqa (utils_logiqa.py): "Passage: " + context + "\nQuestion: " +
// question + "\nChoices:\nA. o0\nB. o1\nC. o2\nD. o3\nAnswer:", choices =
// option texts, gold = "abcd".index(label).
func TestGoldenLogiQA(t *testing.T) {
	needMirror(t)
	checkGolden(t, "logiqa", 0, []golden{
		{0, []string{"Passage: In the planning of a new district in a township, it was decided to build a special community in the southeast, northwest, centered on the citizen park. These four communities are designated as cultural area, leisure area, commercial area and administrative service area. It is known that the administrative service area is southwest of the cultural area, and the cultural area is southeast of the leisure area.\nQuestion: Based on the above statement, which of the following can be derived?\nChoices:\nA. Civic Park is north of the administrative service area\nB. The leisure area is southwest of the cultural area\nC. The cultural district is in the northeast of the business district\nD. The business district is southeast of the leisure area\nAnswer:"},
			[]string{" Civic Park is north of the administrative service area", " The leisure area is southwest of the cultural area",
				" The cultural district is in the northeast of the business district", " The business district is southeast of the leisure area"}, 0},
		{1, []string{"Passage: The company sent three young staff members to the South for business trip. The three of them happened to be sitting in a row. At least one of the two people sitting on the right side of 24 years old was 20 years old. 20 years old. At least one of the two people sitting on the left of the accountant is a salesperson, and one of the two people sitting on the right of the salesperson is also a salesperson.\nQuestion: So what are the three young people on business?\nChoices:\nA. 20-year-old accountant, 20-year-old salesperson, 24-year-old salesperson\nB. 20-year-old accountant, 24-year-old salesperson, 24-year-old salesperson\nC. 24-year-old accountant, 20-year-old salesperson, 20-year-old salesperson\nD. 20-year-old accountant, 20-year-old accountant, 24-year-old salesperson\nAnswer:"},
			[]string{" 20-year-old accountant, 20-year-old salesperson, 24-year-old salesperson", " 20-year-old accountant, 24-year-old salesperson, 24-year-old salesperson",
				" 24-year-old accountant, 20-year-old salesperson, 20-year-old salesperson", " 20-year-old accountant, 20-year-old accountant, 24-year-old salesperson"}, 0},
	})
}

// mmlu: description "The following are multiple choice questions (with
// answers) about " + " ".join(subject.split("_")) + ".\n\n"; 5-shot from the
// first 5 dev rows of the subject; "{{question.strip()}}\nA. ..\nD. ..\nAnswer:";
// choices " A".." D"; target answer.
func TestGoldenMMLU(t *testing.T) {
	needMirror(t)
	ins := buildDocs(t, "mmlu_abstract_algebra", 5, 2)
	want := "The following are multiple choice questions (with answers) about abstract algebra.\n\n" +
		"Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
	c := ins[0].Contexts[0]
	if !strings.HasPrefix(c, want) || strings.Count(c, "\nAnswer:") != 6 ||
		!strings.HasSuffix(c, "\n\nFind the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:") {
		t.Errorf("mmlu doc 0 context: %q", c)
	}
	if strings.Join(ins[0].Conts, "|") != " A| B| C| D" || ins[0].Gold != 1 || ins[1].Gold != 2 {
		t.Errorf("mmlu conts %q gold %d %d", ins[0].Conts, ins[0].Gold, ins[1].Gold)
	}
	if !strings.HasSuffix(ins[1].Contexts[3], "\n\nLet p = (1, 2, 5, 4)(2, 3) in S_5 . Find the index of <p> in S_5.\nA. 8\nB. 2\nC. 24\nD. 120\nAnswer:") {
		t.Errorf("mmlu doc 1: %q", tail(ins[1].Contexts[3], 100))
	}
	// 0-shot: description + question only.
	ins0 := buildDocs(t, "mmlu_abstract_algebra", 0, 1)
	if ins0[0].Contexts[0] != "The following are multiple choice questions (with answers) about abstract algebra.\n\nFind the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:" {
		t.Errorf("mmlu 0-shot: %q", ins0[0].Contexts[0])
	}
	// The whole group: 57 subjects, 14042 questions.
	all := buildDocs(t, "mmlu", 0, 0)
	subj := map[string]bool{}
	for _, in := range all {
		subj[in.Group] = true
	}
	if len(all) != 14042 || len(subj) != 57 {
		t.Fatalf("mmlu: %d docs, %d subjects", len(all), len(subj))
	}
}

// The mirror has no train splits: asking for few-shot PIQA / ARC-C / HellaSwag
// / WinoGrande must fail instead of silently running 0-shot.
func TestFewshotRefusalMirror(t *testing.T) {
	needMirror(t)
	reg, _ := LoadRegistry("")
	for _, task := range []string{"arc_challenge", "hellaswag", "winogrande"} {
		tk, _, _ := reg.Get(task)
		_, err := tk.Build(BuildOptions{NumFewshot: 5, Limit: 1})
		if err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("%s 5-shot: err = %v", task, err)
		}
	}
}
