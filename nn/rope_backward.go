package nn

import "github.com/darwinlm/darwinlm-go/backend"

// RopeForwardT is the generic twin of Rope.Forward (tables stay float32, as
// they are part of the model's definition).
func RopeForwardT[F Float](r *Rope, x []F, T, nHeads, pos0 int) {
	ropeApplyT(r, x, T, nHeads, pos0, 1)
}

// RopeBackwardT is the generic twin of Rope.Backward: the rotation is
// orthogonal, so the gradient is rotated by the inverse angle.
func RopeBackwardT[F Float](r *Rope, dx []F, T, nHeads, pos0 int) {
	ropeApplyT(r, dx, T, nHeads, pos0, -1)
}

// ropeApplyT rotates x [T × nHeads × d] in place, row t at position pos0+t,
// by the angles of r (sign −1: the inverse rotation). R is *Rope or any
// other table (the host device's Rope op).
func ropeApplyT[F Float, R backend.RopeTable](r R, x []F, T, nHeads, pos0 int, sign F) {
	d := r.HeadDimension()
	interleaved := r.IsInterleaved()
	half := d / 2
	for t := 0; t < T; t++ {
		cos, sin := r.Table(pos0 + t)
		for h := 0; h < nHeads; h++ {
			v := x[(t*nHeads+h)*d : (t*nHeads+h)*d+d]
			if interleaved {
				for i := 0; i < half; i++ {
					c, s := F(cos[i]), sign*F(sin[i])
					x0, x1 := v[2*i], v[2*i+1]
					v[2*i] = x0*c - x1*s
					v[2*i+1] = x1*c + x0*s
				}
				continue
			}
			// rotate_half pairing (i, i+half), without a branch or bounds
			// checks in the loop; the same operations as the interleaved one.
			va, vb := v[:half], v[half:d]
			vb, cs, sn := vb[:len(va)], cos[:len(va)], sin[:len(va)]
			for i, x0 := range va {
				c, s := F(cs[i]), sign*F(sn[i])
				x1 := vb[i]
				va[i] = x0*c - x1*s
				vb[i] = x1*c + x0*s
			}
		}
	}
}
