package app

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	prevPercent := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

	for _, set := range []string{"GOGC", "GOMEMLIMIT"} {
		if _, ok := TuneGC(env(map[string]string{set: "200"}), 1<<20); ok {
			t.Errorf("%s set: TuneGC changed the collector", set)
		}
		if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
			t.Errorf("%s set: memory limit %d, want none", set, got)
		}
	}

	limit, ok := TuneGC(env(nil), 40<<20)
	if !ok || limit != gcBaseMemory+40<<20 {
		t.Fatalf("TuneGC = %d, %v; want %d, true", limit, ok, gcBaseMemory+40<<20)
	}
	if got := debug.SetMemoryLimit(-1); got != limit {
		t.Errorf("memory limit %d, want %d", got, limit)
	}
	if got := debug.SetGCPercent(-1); got != gcPercent {
		t.Errorf("GC percent %d, want %d", got, gcPercent)
	}
}
