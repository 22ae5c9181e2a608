package evolve

import (
	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
)

// score is scoreHost for tests on the CPU, where no device error occurs.
func (s *scorer) score(be backend.Backend, m *model.Model, seqs [][]int, ids []int) float64 {
	f, err := s.scoreHost(be, m, seqs, ids)
	if err != nil {
		panic(err)
	}
	return f
}
