package testsignal

import (
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

func TestInertUntilInit(t *testing.T) {
	t.Parallel()
	var s Signal[int]
	s.Signal(1) // no test listens: nothing happens, nothing blocks
	s.Init()
	s.Signal(2)
	s.Signal(3)
	require.Equal(t, 2, s.Wait(t))
	s.Drain()
	s.Signal(4)
	require.Equal(t, 4, s.Wait(t))
}

func TestSignalNeverBlocks(t *testing.T) {
	t.Parallel()
	var s Signal[int]
	s.Init()
	for i := range 2 * buffer {
		s.Signal(i)
	}
	require.Equal(t, 0, s.Wait(t), "the first are kept, the overflow dropped")
}

type recorder struct{ failed []any }

func (*recorder) Helper()             {}
func (r *recorder) Fatal(args ...any) { r.failed = args }

func TestWaitFailsWhenNothingComes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var s Signal[int]
		s.Init()
		rec := &recorder{}
		s.Wait(rec) // virtual time: the 30 s pass at once
		require.NotEmpty(t, rec.failed)
	})
}
