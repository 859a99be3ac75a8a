package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// What a command says on stderr. The contract allows a failed command one
// line: its error. An administrative command's warnings (about the
// configuration, the key file's mode, a store it made) are therefore held
// until it ends: printed as logged (JSON lines) when it succeeded, folded
// into the error's line when it failed. serve logs as it goes.

// heldLog holds the records an administrative command logged.
type heldLog struct {
	mu      sync.Mutex
	records []heldRecord
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

func (h *holdingHandler) Handle(_ context.Context, r slog.Record) error {
	h.hold.mu.Lock()
	defer h.hold.mu.Unlock()
	h.hold.records = append(h.hold.records, heldRecord{h.Handler, r.Clone()})
	return nil
}

func (h *holdingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &holdingHandler{h.Handler.WithAttrs(as), h.hold}
}

func (h *holdingHandler) WithGroup(name string) slog.Handler {
	return &holdingHandler{h.Handler.WithGroup(name), h.hold}
}

// flush writes the held records as they would have been written.
func (l *heldLog) flush(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, hr := range l.records {
		_ = hr.h.Handle(ctx, hr.r)
	}
	l.records = nil
}

// folded is the held records as one line's tail ("" for none):
// "; warning: message (key=value ...)" for each.
func (l *heldLog) folded() string {
	l.mu.Lock()
	defer l.mu.Unlock()
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

// runMain runs the command line args and reports on stderr; it returns
// the exit status.
func runMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	logOutput = stderr
	logHold = nil
	if len(args) > 0 && args[0] != "serve" {
		logHold = &heldLog{}
	}
	err := run(ctx, args, stdin, stdout)
	if err != nil {
		tail := ""
		if logHold != nil {
			tail = logHold.folded()
		}
		fmt.Fprintln(stderr, "idp: "+oneLine(err)+oneLine(fmt.Errorf("%s", tail)))
		return 1
	}
	if logHold != nil {
		logHold.flush(ctx)
	}
	return 0
}
