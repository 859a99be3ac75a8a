//go:build !linux

package password

import "time"

// threadCPU is not measured outside Linux: Stats counts no CPU time there.
func threadCPU() (time.Duration, bool) { return 0, false }
