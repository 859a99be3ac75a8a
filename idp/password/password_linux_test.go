package password

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// TestStats: every hash is counted, verifications too, and the CPU time
// counted is the hashes' own: some of the process's CPU time over the same
// hashes, and most of it (nothing else runs in this test).
func TestStats(t *testing.T) {
	ctx := context.Background()
	h := New(fast, 1)
	p0 := processCPU(t)
	enc, err := h.Hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if ok, _, err := h.Verify(ctx, enc, "correct horse"); !ok || err != nil {
			t.Fatalf("Verify = %v, %v", ok, err)
		}
	}
	process := processCPU(t) - p0
	n, cpu := h.Stats()
	if n != 4 {
		t.Errorf("Stats counted %d hashes, want 4", n)
	}
	if cpu <= 0 || cpu > process || cpu < process/4 {
		t.Errorf("hash CPU %v, process CPU over the same hashes %v", cpu, process)
	}
}

func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
