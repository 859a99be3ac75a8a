package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

// What a command says on stderr. The contract allows a failed command one
// line: its error. What a command logs (warnings about the configuration,
// the key file's mode, a store it made; serve's start) is therefore held:
// an administrative command's until it ends, serve's until its listeners
// are open. It is then written as logged (JSON lines), or, when the
// command failed first, folded into the error's line.

// heldLog holds the records a command logged until it is released.
type heldLog struct {
	mu       sync.Mutex
	records  []heldRecord
	released atomic.Bool // set under mu: records are written at once
}

type heldRecord struct {
	h slog.Handler // the handler that would have written it
	r slog.Record
}

// holdingHandler is a handler whose records wait in hold.
type holdingHandler struct {
	slog.Handler
	hold *heldLog
}

func (h *holdingHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.hold.released.Load() {
		h.hold.mu.Lock()
		if !h.hold.released.Load() {
			h.hold.records = append(h.hold.records, heldRecord{h.Handler, r.Clone()})
			h.hold.mu.Unlock()
			return nil
		}
		h.hold.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h *holdingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &holdingHandler{h.Handler.WithAttrs(as), h.hold}
}

func (h *holdingHandler) WithGroup(name string) slog.Handler {
	return &holdingHandler{h.Handler.WithGroup(name), h.hold}
}

// release writes the held records as they would have been written, and
// lets later ones through at once. Nothing on a nil heldLog.
func (l *heldLog) release(ctx context.Context) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, hr := range l.records {
		_ = hr.h.Handle(ctx, hr.r)
	}
	l.records = nil
	l.released.Store(true)
}

// exiting says that a signal makes serve exit at once: in log once its
// records are let through; before that (still starting), as the one line
// a failed command writes, with what it held folded in.
func (l *heldLog) exiting(log *slog.Logger, s os.Signal) {
	const msg = "another signal: exiting at once, without finishing the shutdown"
	if l != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		if !l.released.Load() {
			fmt.Fprintln(logOutput, failureLine(msg+" ("+s.String()+")", l.foldedLocked()))
			return
		}
	}
	log.Warn(msg, "signal", s.String())
}

// folded is the held records as one line's tail ("" for none):
// "; warning: message (key=value ...)" for each.
func (l *heldLog) folded() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.foldedLocked()
}

func (l *heldLog) foldedLocked() string {
	var b strings.Builder
	for _, hr := range l.records {
		b.WriteString("; " + strings.ToLower(hr.r.Level.String()) + ": " + hr.r.Message)
		var attrs []string
		hr.r.Attrs(func(a slog.Attr) bool {
			attrs = append(attrs, a.Key+"="+a.Value.String())
			return true
		})
		if len(attrs) > 0 {
			b.WriteString(" (" + strings.Join(attrs, " ") + ")")
		}
	}
	return b.String()
}

// failureLine is the one line a failed command writes: msg, then what it
// logged before (folded).
func failureLine(msg, folded string) string { return "idp: " + lineOf(msg+folded) }

// runMain runs the command line args and reports on stderr; it returns
// the exit status.
func runMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (status int) {
	logOutput, logHold = stderr, &heldLog{}
	defer func() {
		if v := recover(); v != nil { // one line, as any failure (the stack is no help to an operator)
			fmt.Fprintln(stderr, failureLine(fmt.Sprint("internal error: ", v), logHold.folded()))
			status = 2
		}
	}()
	err := run(ctx, args, stdin, stdout)
	if err != nil {
		fmt.Fprintln(stderr, failureLine(err.Error(), logHold.folded()))
		return 1
	}
	logHold.release(ctx)
	return 0
}
