package browsertest

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/config"
)

// axeSource is axe-core, pinned (see testdata/axe-core/README.md).
//
//go:embed testdata/axe-core/axe.min.js
var axeSource string

var (
	chromiumPath    string // the browser binary
	chromiumMissing string // why there is none ("" when there is one)
	viewerBin       string // the demo viewer, built once by TestMain
	viewerBuildErr  error
)

func TestMain(m *testing.M) {
	chromiumPath, chromiumMissing = findChromium()
	code := func() int {
		if chromiumMissing != "" {
			return m.Run() // every test skips (or fails under CI) by itself
		}
		dir, err := os.MkdirTemp("", "browsertest-viewer")
		if err != nil {
			viewerBuildErr = err
			return m.Run()
		}
		defer os.RemoveAll(dir)
		viewerBin = filepath.Join(dir, "demo-viewer")
		goCmd, err := exec.LookPath("go")
		if err != nil {
			goCmd = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		out, err := exec.Command(goCmd, "build", "-o", viewerBin, "github.com/kamera-id/idp/cmd/demo-viewer").CombinedOutput()
		if err != nil {
			viewerBuildErr = fmt.Errorf("go build ./cmd/demo-viewer: %v\n%s", err, out)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// findChromium finds the browser: $CHROMIUM, else chromium on the PATH
// (Debian's package installs /usr/bin/chromium).
func findChromium() (path, missing string) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Sprintf("CHROMIUM=%s: %v", p, err)
		}
		return p, ""
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, ""
		}
	}
	return "", "no chromium on the PATH (Debian: apt-get install chromium; or set CHROMIUM=/path/to/chrome)"
}

// needBrowser skips the test when there is no Chromium, loudly, and fails
// it under CI=true, where the browser tests must run.
func needBrowser(t *testing.T) {
	t.Helper()
	if chromiumMissing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required under CI=true: %s", chromiumMissing)
		}
		t.Skipf("SKIP-CHROMIUM: %s", chromiumMissing)
	}
	if viewerBuildErr != nil {
		t.Fatal(viewerBuildErr)
	}
}

// clock is the provider's time: the real time plus an offset that tests
// move forward (a new TOTP time step). It starts ten minutes behind the
// real clock, which the viewer's ID token checks and fosite's "not in the
// future" checks use, so moving it a few steps never puts it ahead.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// stack is a running provider with one customer and the demo viewer
// registered as its first-party client.
type stack struct {
	t        *testing.T
	app      *app.App
	clock    *clock
	IDP      string // the provider's issuer, http://127.0.0.1:port
	Viewer   string // the viewer, http://localhost:port (another cookie host)
	MailDir  string // where the provider writes its mails (no SMTP server)
	Email    string
	Password string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cfg := config.Defaults()
	cfg.DatabaseURL = "sqlite://" + filepath.Join(t.TempDir(), "idp.db")
	cfg.SecretKey = base64.StdEncoding.EncodeToString(key)
	cfg.ArgonMemoryKiB, cfg.ArgonIterations = 8192, 1 // fast hashes for tests
	cfg.BrandName = "カメラID"
	// Another family of relying parties with its own look (the viewer
	// keeps the provider's).
	cfg.Brands = []config.Brand{{ID: "door", Name: "ドアカメラ", Color: doorBrandColor, Clients: []string{"door-cam"}}}
	cfg.MailPoll = 50 * time.Millisecond // the sender is also nudged; this bounds a missed nudge
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Issuer = "http://" + ln.Addr().String()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := &clock{offset: -10 * time.Minute}
	a, err := app.Open(context.Background(), cfg, app.Options{Now: c.Now, Migrate: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	// The mail sender, as idp serve runs it: with no SMTP server configured
	// it writes each mail into MailDir, as for a newcomer's make run.
	mailCtx, stopMail := context.WithCancel(context.Background())
	mailDone := make(chan struct{})
	go func() { defer close(mailDone); a.RunMail(mailCtx) }()
	t.Cleanup(func() {
		stopMail()
		<-mailDone
		_ = srv.Close()
		_ = a.Close()
	})
	s := &stack{t: t, app: a, clock: c, IDP: cfg.Issuer, MailDir: cfg.MailDir(),
		Email: "customer@example.com", Password: "correct-horse-42"}
	if _, err := a.CreateUser(context.Background(), app.NewUser{Email: s.Email, Name: "山田 花子", Password: s.Password}); err != nil {
		t.Fatal(err)
	}
	s.startViewer()
	return s
}

// startViewer runs cmd/demo-viewer against the provider and waits until it
// answers.
func (s *stack) startViewer() {
	t := s.t
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // the viewer listens on it itself
	s.Viewer = fmt.Sprintf("http://localhost:%d", port)
	c, secret, err := s.app.CreateClient(context.Background(), app.NewClient{
		ID: "camera-viewer", Name: "カメラビューア", RedirectURIs: []string{s.Viewer + "/callback"},
		PostLogoutRedirectURIs: []string{s.Viewer + "/"}, FirstParty: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := json.Marshal(map[string]string{"client_id": c.ID, "client_secret": secret})
	file := filepath.Join(t.TempDir(), "demo-client.json")
	if err := os.WriteFile(file, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(viewerBin, "-issuer", s.IDP, "-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"-base-url", s.Viewer, "-client-file", file)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// Readiness: poll until the viewer answers, it exits, or a minute passes.
	deadline := time.After(time.Minute)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("the demo viewer exited: %v\n%s", err, logs.String())
		case <-deadline:
			t.Fatalf("the demo viewer did not answer within a minute:\n%s", logs.String())
		case <-time.After(delay):
		}
	}
}

// code is the current TOTP code of a setup key as the page shows it
// (grouped with spaces), at the provider's time.
func (s *stack) code(setupKey string) string {
	s.t.Helper()
	c, err := totp.GenerateCode(strings.ReplaceAll(setupKey, " ", ""), s.clock.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// viewport is a screen size the tests run at.
type viewport struct {
	Name          string
	Width, Height int64
	Mobile        bool
}

var viewports = []viewport{
	{Name: "phone", Width: 375, Height: 812, Mobile: true},
	{Name: "desktop", Width: 1280, Height: 800},
}

// session is one test at one viewport: a stack and a fresh browser.
type session struct {
	t   *testing.T
	st  *stack
	vp  viewport
	ctx context.Context
	// brand is the --brand colour page() expects.
	brand string

	test    string // the top-level test's name: the screenshot folder
	shotDir string
	shots   int

	mu       sync.Mutex
	problems []string // console errors, exceptions, CSP violations since the last page check
	// errorDocument is a page opened for its error status, which the
	// browser logs as a failed load.
	errorDocument string

	downloadDir string
	downloads   chan download
}

// download is one of a download's two events: it began (with the suggested
// file name), or it completed (Done).
type download struct {
	GUID, Name string
	Done       bool
}

// eachViewport runs f once per viewport, each with its own provider, viewer
// and browser.
func eachViewport(t *testing.T, f func(t *testing.T, s *session)) {
	for _, vp := range viewports {
		t.Run(vp.Name, func(t *testing.T) {
			needBrowser(t)
			f(t, newSession(t, startStack(t), vp))
		})
	}
}

// The pages' colours: the provider's own, and the door family's.
const (
	ownBrandColor  = "#0b5cad"
	doorBrandColor = "#1f6f43"
)

func newSession(t *testing.T, st *stack, vp viewport) *session {
	t.Helper()
	test, _, _ := strings.Cut(t.Name(), "/")
	s := &session{t: t, st: st, vp: vp, test: test, brand: ownBrandColor, downloadDir: t.TempDir(), downloads: make(chan download, 4)}
	s.shotDir = filepath.Join(screenshotRoot(t), test)
	if err := os.MkdirAll(s.shotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(s.shotDir, "*-"+vp.Name+".png"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	// A fresh profile; not t.TempDir, whose cleanup fails when one of
	// Chromium's helper processes still writes to it as the browser stops.
	profile, err := os.MkdirTemp("", "browsertest-profile")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", "ja"),
		chromedp.Flag("accept-lang", "ja"),
		chromedp.UserDataDir(profile),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		if os.RemoveAll(profile) != nil {
			_ = os.RemoveAll(profile) // a helper process wrote one more file
		}
	})
	s.ctx = ctx
	chromedp.ListenTarget(ctx, s.onEvent)
	emulate := []chromedp.EmulateViewportOption{}
	if vp.Mobile {
		emulate = append(emulate, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	// The first Run starts the browser, bound to this context (not to a
	// shorter-lived one of run).
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	s.run(
		cdplog.Enable(),
		chromedp.EmulateViewport(vp.Width, vp.Height, emulate...),
		browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllowAndName).
			WithDownloadPath(s.downloadDir).WithEventsEnabled(true),
		browser.GrantPermissions([]browser.PermissionType{browser.PermissionTypeClipboardReadWrite,
			browser.PermissionTypeClipboardSanitizedWrite}).WithOrigin(st.IDP),
	)
	return s
}

// screenshotRoot is artifacts/screenshots at the module's root (what CI
// keeps), or $SCREENSHOT_DIR.
func screenshotRoot(t *testing.T) string {
	if d := os.Getenv("SCREENSHOT_DIR"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "artifacts", "screenshots")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// onEvent collects what a customer would not see but a page must not do:
// uncaught exceptions, console errors and the browser's error log (CSP
// violations land there); and the downloads.
func (s *session) onEvent(ev any) {
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		s.problem("exception: " + e.ExceptionDetails.Text + " " + exceptionText(e.ExceptionDetails))
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.APITypeError {
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, string(a.Value))
			}
			s.problem("console.error: " + strings.Join(parts, " "))
		}
	case *cdplog.EventEntryAdded:
		if e.Entry.Level == cdplog.LevelError && !strings.HasSuffix(e.Entry.URL, "/favicon.ico") {
			s.mu.Lock()
			allowed := e.Entry.Source == cdplog.SourceNetwork && e.Entry.URL == s.errorDocument
			s.mu.Unlock()
			if !allowed {
				s.problem(fmt.Sprintf("%s: %s (%s)", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		}
	case *browser.EventDownloadWillBegin:
		s.mu.Lock()
		name := e.SuggestedFilename
		s.mu.Unlock()
		go func() { s.downloads <- download{GUID: e.GUID, Name: name} }()
	case *browser.EventDownloadProgress:
		if e.State == browser.DownloadProgressStateCompleted {
			go func() { s.downloads <- download{GUID: e.GUID, Done: true} }()
		}
	}
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil {
		return d.Exception.Description
	}
	return ""
}

func (s *session) problem(p string) {
	s.mu.Lock()
	s.problems = append(s.problems, p)
	s.mu.Unlock()
}

// run runs browser actions; an error ends the test.
func (s *session) run(actions ...chromedp.Action) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		s.failureShot()
		s.t.Fatalf("browser: %v (at %s)", err, s.url())
	}
}

func (s *session) url() string {
	var u string
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	_ = chromedp.Run(ctx, chromedp.Location(&u))
	return u
}

// open navigates to url and waits for sel on the page where it ends up.
func (s *session) open(url, sel string) {
	s.t.Helper()
	s.run(chromedp.Navigate(url))
	s.waitFor(sel)
}

// openError opens a page that answers with an error status.
func (s *session) openError(url, sel string) {
	s.t.Helper()
	s.mu.Lock()
	s.errorDocument = url
	s.mu.Unlock()
	s.open(url, sel)
}

// waitFor waits until sel is visible and the document has loaded.
func (s *session) waitFor(sel string) {
	s.t.Helper()
	var done bool
	s.run(chromedp.WaitVisible(sel, chromedp.ByQuery),
		chromedp.Poll(`document.readyState === "complete"`, &done, chromedp.WithPollingTimeout(30*time.Second)))
}

// fill types value into the field sel, as a person would, after clearing it.
func (s *session) fill(sel, value string) {
	s.t.Helper()
	var cleared bool
	s.run(chromedp.WaitVisible(sel, chromedp.ByQuery),
		chromedp.Evaluate(fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = ""; return true; })()`, sel), &cleared),
		chromedp.SendKeys(sel, value, chromedp.ByQuery))
}

// click clicks sel and waits for next (on the page the click leads to).
func (s *session) click(sel, next string) {
	s.t.Helper()
	s.run(chromedp.Click(sel, chromedp.ByQuery, chromedp.NodeVisible))
	s.waitFor(next)
}

// submit clicks the form's primary button.
func (s *session) submit(next string) {
	s.t.Helper()
	s.click(`main form button[type="submit"]`, next)
}

// eval evaluates a JavaScript expression into out.
func (s *session) eval(js string, out any) {
	s.t.Helper()
	s.run(chromedp.Evaluate(js, out))
}

// evalAsync evaluates an expression that gives a promise.
func (s *session) evalAsync(js string, out any) {
	s.t.Helper()
	s.run(chromedp.Evaluate(js, out, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
		return p.WithAwaitPromise(true)
	}))
}

func (s *session) text(sel string) string {
	s.t.Helper()
	var v string
	s.run(chromedp.Text(sel, &v, chromedp.ByQuery))
	return strings.TrimSpace(v)
}

func (s *session) attr(sel, name string) string {
	s.t.Helper()
	var v string
	s.eval(fmt.Sprintf(`document.querySelector(%q).getAttribute(%q) || ""`, sel, name), &v)
	return v
}

func (s *session) count(sel string) int {
	s.t.Helper()
	var n int
	s.eval(fmt.Sprintf(`document.querySelectorAll(%q).length`, sel), &n)
	return n
}

// failureShot saves the page as it was when an action failed.
func (s *session) failureShot() {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	var png []byte
	if chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)) == nil {
		file := filepath.Join(s.shotDir, fmt.Sprintf("failure-%s.png", s.vp.Name))
		_ = os.WriteFile(file, png, 0o644)
		s.t.Logf("the page at the failure: %s", file)
	}
}

// screenshot saves the whole page as <nn>-<name>-<viewport>.png.
func (s *session) screenshot(name string) {
	s.t.Helper()
	var png []byte
	s.run(chromedp.FullScreenshot(&png, 100))
	s.shots++
	file := filepath.Join(s.shotDir, fmt.Sprintf("%02d-%s-%s.png", s.shots, name, s.vp.Name))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// page checks a page of the provider as it stands and saves its
// screenshot: the document's language, no sideways scrolling, no console
// errors or CSP violations, a visible heading, and no serious or critical
// accessibility violation found by axe-core.
func (s *session) page(name, lang string) {
	s.t.Helper()
	var got struct {
		Lang        string  `json:"lang"`
		ScrollWidth float64 `json:"scrollWidth"`
		Width       float64 `json:"width"`
		H1          string  `json:"h1"`
		Brand       string  `json:"brand"`
	}
	s.eval(`({lang: document.documentElement.lang, scrollWidth: document.documentElement.scrollWidth,
		width: window.innerWidth, h1: (document.querySelector("h1") || {}).textContent || "",
		brand: getComputedStyle(document.documentElement).getPropertyValue("--brand").trim()})`, &got)
	if got.Lang != lang {
		s.t.Errorf("%s: <html lang=%q>, want %q", name, got.Lang, lang)
	}
	if got.ScrollWidth > got.Width {
		s.t.Errorf("%s: the page is %vpx wide in a %vpx viewport (sideways scrolling)", name, got.ScrollWidth, got.Width)
	}
	if strings.TrimSpace(got.H1) == "" {
		s.t.Errorf("%s: no h1", name)
	}
	if got.Brand != s.brand {
		s.t.Errorf("%s: --brand is %q: /static/brand.css not applied", name, got.Brand)
	}
	s.screenshot(name)
	s.axe(name)
	s.checkProblems(name)
}

// checkProblems reports the console errors and exceptions seen since the
// last check.
func (s *session) checkProblems(name string) {
	s.t.Helper()
	s.mu.Lock()
	problems := s.problems
	s.problems = nil
	s.mu.Unlock()
	for _, p := range problems {
		s.t.Errorf("%s: %s", name, p)
	}
}

type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target  []string `json:"target"`
		Summary string   `json:"failureSummary"`
	} `json:"nodes"`
}

// axe runs axe-core in the page (injected through DevTools, not through the
// page: the CSP allows no inline script) and fails on serious or critical
// violations, listing them.
func (s *session) axe(name string) {
	s.t.Helper()
	var loaded bool
	s.eval(axeSource+"\n;typeof axe === 'object'", &loaded)
	if !loaded {
		s.t.Fatal("axe-core did not load")
	}
	var vs []axeViolation
	s.evalAsync(`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations.map(v => ({
		id: v.id, impact: v.impact, help: v.help,
		nodes: v.nodes.map(n => ({target: n.target.map(String), failureSummary: n.failureSummary}))})))`, &vs)
	for _, v := range vs {
		msg := fmt.Sprintf("%s: axe %s (%s): %s", name, v.ID, v.Impact, v.Help)
		for _, n := range v.Nodes {
			msg += fmt.Sprintf("\n    %s: %s", strings.Join(n.Target, " "), n.Summary)
		}
		if v.Impact == "serious" || v.Impact == "critical" {
			s.t.Error(msg)
		} else {
			s.t.Log(msg)
		}
	}
}

// waitDownload waits for a download to complete and returns its suggested
// name and content.
func (s *session) waitDownload() (string, []byte) {
	s.t.Helper()
	names, done := map[string]string{}, map[string]bool{}
	for {
		select {
		case d := <-s.downloads:
			// The two events of a download reach the channel from goroutines
			// of their own, so in either order: wait for both.
			if d.Done {
				done[d.GUID] = true
			} else {
				names[d.GUID] = d.Name
			}
			name, began := names[d.GUID]
			if !began || !done[d.GUID] {
				continue
			}
			b, err := os.ReadFile(filepath.Join(s.downloadDir, d.GUID))
			if err != nil {
				s.t.Fatal(err)
			}
			return name, b
		case <-time.After(20 * time.Second):
			s.t.Fatal("no download completed within 20s")
		}
	}
}

// --- What a customer does -------------------------------------------------

// loginAtViewer starts at the viewer's login and gives the password on the
// provider's login page; it stops at next (the TOTP step, or the viewer).
func (s *session) loginAtViewer(next string, shots bool) {
	s.t.Helper()
	s.open(s.st.Viewer+"/login", "#email")
	if shots {
		s.page("login", "ja")
	}
	s.fill("#email", s.st.Email)
	s.fill("#password", s.st.Password)
	s.submit(next)
}

// amr reads the amr the viewer shows (e.g. "[pwd otp]").
func (s *session) amr() string {
	s.t.Helper()
	var v string
	s.eval(`[...document.querySelectorAll("tr")].find(r => r.cells[0].textContent === "amr").cells[1].textContent`, &v)
	return v
}

// logoutAtViewer logs out of the viewer, which logs out of the provider
// too (RP-initiated logout with the ID token as hint: no confirmation page)
// and comes back to the viewer.
func (s *session) logoutAtViewer() {
	s.t.Helper()
	s.open(s.st.Viewer+"/logout", `a[href="/login"]`)
	if !strings.HasPrefix(s.url(), s.st.Viewer) {
		s.t.Fatalf("after logout at %s, want the viewer", s.url())
	}
}

var groupedKey = regexp.MustCompile(`^[A-Z2-7]{4}( [A-Z2-7]{1,4})+$`)

// enroll turns 2FA on from My Page as the manual says and returns the setup
// key and the backup codes. The customer is logged in.
func (s *session) enroll(shots bool) (key string, codes []string) {
	s.t.Helper()
	s.open(s.st.IDP+"/account", "a.settings-link")
	if shots {
		s.page("mypage", "ja")
	}
	s.click("a.settings-link", `a[href="/account/2fa/setup"]`)
	if shots {
		s.page("2fa-off", "ja")
	}
	s.click(`a[href="/account/2fa/setup"]`, "#password")
	if shots {
		s.page("setup-password", "ja")
	}
	s.fill("#password", s.st.Password)
	s.submit("#setup-key")
	key = s.text("#setup-key")
	if !groupedKey.MatchString(key) {
		s.t.Errorf("setup key %q is not grouped in fours", key)
	}
	var steps []string
	s.eval(`[...document.querySelectorAll("main h2")].map(h => h.textContent)`, &steps)
	if len(steps) < 3 || !strings.Contains(steps[0], "手順1") || !strings.Contains(steps[1], "手順2") || !strings.Contains(steps[2], "手順3") {
		s.t.Errorf("setup steps %q, want 手順1, 手順2, 手順3", steps)
	}
	var qr struct {
		Width    float64 `json:"width"`
		Natural  float64 `json:"natural"`
		Complete bool    `json:"complete"`
	}
	s.eval(`(() => { const i = document.querySelector("#setup-qr img"); const r = i.getBoundingClientRect();
		return {width: r.width, natural: i.naturalWidth, complete: i.complete}; })()`, &qr)
	if !qr.Complete || qr.Natural == 0 || qr.Width < 200 {
		s.t.Errorf("QR code: %+v, want a loaded image at least 200px wide", qr)
	}
	if shots {
		s.page("setup", "ja")
	}
	// A wrong code first: the same page with the message tied to the field.
	s.fill("#code", s.st.wrongCode(key))
	s.submit("#form-error")
	var described string
	s.eval(`document.querySelector("#code").getAttribute("aria-describedby")`, &described)
	if described != "form-error" || s.text("#setup-key") != key {
		s.t.Errorf("after a wrong code: aria-describedby %q, setup key %q (was %q)", described, s.text("#setup-key"), key)
	}
	if shots {
		s.page("setup-wrong-code", "ja")
	}
	s.fill("#code", s.st.code(key))
	s.submit(".code-grid")
	s.eval(`[...document.querySelectorAll(".backup-code")].map(c => c.textContent.trim())`, &codes)
	if len(codes) != 10 {
		s.t.Fatalf("%d backup codes, want 10", len(codes))
	}
	if shots {
		s.page("setup-done", "ja")
	}
	return key, codes
}

// wrongCode is a six-digit code that the provider refuses: none of the
// codes of the time steps it accepts (the current one and its neighbours).
func (s *stack) wrongCode(setupKey string) string {
	s.t.Helper()
	secret := strings.ReplaceAll(setupKey, " ", "")
	now := s.clock.Now()
	valid := map[string]bool{}
	for _, d := range []time.Duration{-time.Minute, -30 * time.Second, 0, 30 * time.Second, time.Minute} {
		c, err := totp.GenerateCode(secret, now.Add(d))
		if err != nil {
			s.t.Fatal(err)
		}
		valid[c] = true
	}
	for _, c := range []string{"000000", "111111", "222222"} {
		if !valid[c] {
			return c
		}
	}
	panic("unreachable: five codes cannot cover three")
}
