package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a provider started by the tool as a subprocess, on a loopback
// port, whose CPU time and memory are read from /proc.
type server struct {
	cmd        *exec.Cmd
	URL        string
	metricsURL string // its Prometheus metrics listener
	logPath    string
	done       chan error
}

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat (100 on every Linux architecture Go supports).
const clockTicks = 100

// startServer runs `idp serve` with env (IDP_* variables) on a free
// loopback port and waits until /readyz answers.
func startServer(ctx context.Context, bin, dir string, env map[string]string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	addr, maddr := "127.0.0.1:"+strconv.Itoa(port), "127.0.0.1:"+strconv.Itoa(mport)
	env["IDP_LISTEN"], env["IDP_METRICS_LISTEN"] = addr, maddr
	env["IDP_ISSUER"] = "http://" + addr
	cmd := exec.Command(bin, "serve")
	cmd.Env = serverEnv(env)
	logPath := filepath.Join(dir, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	s := &server{cmd: cmd, URL: "http://" + addr, metricsURL: "http://" + maddr, logPath: logPath, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); logf.Close() }()
	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// serverEnv is the tool's environment without any IDP_ variable, plus env.
func serverEnv(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IDP_") {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls /readyz until it answers 200, the process exits or the
// time is up.
func (s *server) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("the provider exited before it was ready (%v): %s", err, s.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the provider was not ready within %s: %s", limit, s.logTail())
		}
	}
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// stop ends the provider with SIGTERM (SIGKILL after 10s).
func (s *server) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// cpu returns the provider's CPU time so far, as the kernel accounts it:
// the sum of its threads' run time in /proc/<pid>/task/*/schedstat
// (nanoseconds; user and system), or, where the kernel has no schedstat,
// utime+stime from /proc/<pid>/stat (clock ticks, 10 ms).
func (s *server) cpu() (time.Duration, error) {
	if d, err := schedCPU(s.cmd.Process.Pid); err == nil {
		return d, nil
	}
	return procCPU(s.cmd.Process.Pid)
}

// schedCPU sums the run time of the process's threads. Go's threads live
// as long as the process, so none of the time is lost with an exited thread.
func schedCPU(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return 0, err
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return 0, errors.New("malformed schedstat")
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		total += time.Duration(ns)
	}
	return total, nil
}

func procCPU(pid int) (time.Duration, error) {
	ticks, err := procStat(pid, statUtime, statStime)
	if err != nil {
		return 0, err
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// faults returns the provider's page faults so far (minor and major): each
// is kernel time charged to the provider, and a fresh page costs one.
func (s *server) faults() (int64, error) { return procStat(s.cmd.Process.Pid, statMinflt, statMajflt) }

// Fields of /proc/<pid>/stat (numbered from 1, as in proc(5)).
const (
	statMinflt = 10
	statMajflt = 12
	statUtime  = 14
	statStime  = 15
)

// procStat returns the sum of the given numeric fields of /proc/<pid>/stat.
func procStat(pid int, fields ...int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after the last ')', which start at field 3.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/pid/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	var sum int64
	for _, n := range fields {
		if n-3 >= len(f) {
			return 0, errors.New("malformed /proc/pid/stat")
		}
		v, err := strconv.ParseInt(f[n-3], 10, 64)
		if err != nil {
			return 0, errors.New("malformed /proc/pid/stat")
		}
		sum += v
	}
	return sum, nil
}

// peakRSS returns the provider's peak resident set (VmHWM).
func (s *server) peakRSS() (int64, error) {
	return procStatusKiB(s.cmd.Process.Pid, "VmHWM:")
}

// resetPeakRSS starts a new peak: VmHWM becomes the current RSS.
func (s *server) resetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.cmd.Process.Pid), []byte("5"), 0)
}

func procStatusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			v := strings.TrimSuffix(strings.TrimSpace(rest), " kB")
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// requireLoopback refuses to drive anything but this machine.
func requireLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing to load %s: only loopback targets are allowed", raw)
	}
	return nil
}

func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
