package main

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// forcedByFosite are the test-only packages that fosite v0.49 puts into
// every binary that uses it, each with the only packages allowed to import
// it. fosite's handler/oauth2 imports fosite/storage, whose memory.go (an
// in-memory store for fosite's own examples) imports fosite/internal:
// fosite's gomock mocks, which import gomock, testify and testing. fosite
// also imports ory/x/otelx, whose Jaeger exporter's thrift code imports
// testing. Nothing of this module imports any of them; a fosite release
// that drops them shows here as an entry no longer needed.
var forcedByFosite = map[string][]string{
	"github.com/ory/fosite/internal":          {"github.com/ory/fosite/storage"},
	"github.com/golang/mock/gomock":           {"github.com/ory/fosite/internal"},
	"github.com/stretchr/testify/require":     {"github.com/ory/fosite/internal"},
	"github.com/stretchr/testify/assert":      {"github.com/stretchr/testify/require"},
	"github.com/stretchr/testify/assert/yaml": {"github.com/stretchr/testify/assert"},
	"net/http/httptest":                       {"github.com/stretchr/testify/assert"},
	"testing": {"github.com/ory/fosite/internal",
		"go.opentelemetry.io/otel/exporters/jaeger/internal/third_party/thrift/lib/go/thrift"},
}

// testFrameworks are test-only module paths whose names do not say so.
var testFrameworks = []string{"github.com/onsi/ginkgo", "github.com/onsi/gomega", "github.com/chromedp/"}

// testOnly reports whether a package is for tests: this module's end-to-end
// tests, any package with "test" or "mock" in an element of its path
// (testing, httptest, testify, gomock, idp/testenv, idp/browsertest,
// idp/store/storetest, ...), or a test framework.
func testOnly(path string) bool {
	if path == "github.com/kamera-id/idp/idp/e2e" || strings.HasPrefix(path, "github.com/kamera-id/idp/idp/e2e/") {
		return true
	}
	for _, e := range strings.Split(strings.ToLower(path), "/") {
		if strings.Contains(e, "test") || strings.Contains(e, "mock") {
			return true
		}
	}
	for _, f := range testFrameworks {
		if strings.HasPrefix(path, f) {
			return true
		}
	}
	return false
}

// TestProductionDeps keeps the idp binary free of test-only packages: of
// this module's test helpers and of test frameworks, but for those fosite
// forces in (forcedByFosite), which must come in through fosite alone.
func TestProductionDeps(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the go command is needed to list the binary's packages: %v", err)
		}
		t.Skipf("SKIP-GO: the go command is not on PATH (%v), so the binary's packages cannot be listed", err)
	}
	cmd := exec.Command(goCmd, "list", "-deps", "-f", "{{.ImportPath}}|{{.Standard}}|{{join .Imports \" \"}}", ".")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	importers := map[string][]string{}
	var deps []string
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		f := strings.SplitN(strings.TrimSpace(line), "|", 3)
		if len(f) != 3 {
			t.Fatalf("go list: unexpected line %q", line)
		}
		path, std := f[0], f[1] == "true"
		// The standard library's internal packages (internal/testlog
		// under os, internal/synctest under sync) only it can import: what
		// brings one in is checked instead.
		if !(std && slices.Contains(strings.Split(path, "/"), "internal")) {
			deps = append(deps, path)
		}
		for _, imp := range strings.Fields(f[2]) {
			importers[imp] = append(importers[imp], path)
		}
	}
	if !slices.Contains(deps, "github.com/kamera-id/idp/idp/app") {
		t.Fatalf("go list gave no sensible dependencies: %q", out)
	}
	for _, d := range deps {
		if !testOnly(d) {
			continue
		}
		allowed, ok := forcedByFosite[d]
		if !ok {
			t.Errorf("test-only package %s is in the idp binary, imported by %s", d, strings.Join(importers[d], ", "))
			continue
		}
		for _, by := range importers[d] {
			if !slices.Contains(allowed, by) {
				t.Errorf("%s, allowed in the idp binary only through fosite (from %s), is also imported by %s", d, strings.Join(allowed, ", "), by)
			}
		}
	}
	for p := range forcedByFosite {
		if !slices.Contains(deps, p) {
			t.Errorf("%s is no longer in the idp binary: drop it from forcedByFosite", p)
		}
	}
}
