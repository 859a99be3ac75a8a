// Command idp is the identity provider: the server and its administrative
// commands, all reading the same configuration (see config/idp.env.example).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/store"
)

const usage = `usage: idp <command> [flags]

commands:
  serve                      run the server
  migrate                    apply pending database migrations and exit
  user create --email E [--name N] [--locale ja|en] --password-stdin
  user reset-mfa --email E   remove a user's two-step verification (support desk)
  user show --email E        show an account (2FA on or off, disabled or not; never a secret)
  user disable --email E     lock an account out: its sessions and tokens end (support desk)
  user enable --email E      let a disabled account log in again
  user delete --email E      delete an account and everything kept of it
  client create --id ID --name NAME --redirect-uri URI [--redirect-uri URI2 ...]
                [--public] [--first-party] [--post-logout-redirect-uri URI ...]
  client update --id ID [--name NAME] [--redirect-uri URI ...] [--post-logout-redirect-uri URI ...]
                [--first-party=true|false]
                             change a relying party (a list given replaces the list)
  client list                list the relying parties (JSON, no secrets)
  client rotate-secret --id ID [--keep-old DURATION]
                             give a confidential client a new secret; the old one stops
                             working, or after DURATION (e.g. 24h, at most 720h)
  client delete --id ID      remove a relying party with its consents and tokens
  keys rotate                make a new signing key current
  demo-setup [--client-file F] [--viewer URL]
                             create the demo user and client of 'make run' if missing

Configuration comes from IDP_* environment variables, or a KEY=VALUE file
named by IDP_CONFIG (a non-empty environment variable wins).`

func main() {
	os.Exit(runMain(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func oneLine(err error) string { return lineOf(err.Error()) }

// lineOf is s on one line: its line breaks as "; ".
func lineOf(s string) string {
	return strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", "; ").Replace(s)
}

// errUsage is returned for a command line that cannot be understood.
var errUsage = errors.New("see 'idp help'")

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no command; %w", errUsage)
	}
	cmd := args[0]
	if len(args) > 1 && (cmd == "user" || cmd == "client" || cmd == "keys") {
		cmd += " " + args[1]
		args = args[1:]
	}
	args = args[1:]
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "serve":
		return serve(ctx, args)
	case "migrate":
		return migrate(ctx, args)
	case "user create":
		return userCreate(ctx, args, stdin, stdout)
	case "client create":
		return clientCreate(ctx, args, stdout)
	case "client update":
		return clientUpdate(ctx, args, stdout)
	case "client rotate-secret":
		return clientRotateSecret(ctx, args, stdout)
	case "demo-setup":
		return demoSetup(ctx, args, stdout)
	}
	if c, ok := adminCommands[cmd]; ok {
		return c.run(ctx, cmd, args, stdout)
	}
	return fmt.Errorf("unknown command %q; %w", strings.Join(strings.Fields(cmd), " "), errUsage)
}

// loadConfig loads the configuration and logs its warnings (IDP_ variables
// of the environment that are not settings) once, for every command.
func loadConfig() (config.Config, error) {
	cfg, err := config.LoadEnviron(os.Getenv("IDP_CONFIG"), os.Environ())
	if err != nil {
		return cfg, err
	}
	log := newLogger(cfg.LogLevel)
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	return cfg, nil
}

// logOutput is where every command logs (a test's buffer in tests), and
// logHold, when set, holds an administrative command's records until it
// ends (runMain).
var (
	logOutput io.Writer = os.Stderr
	logHold   *heldLog
)

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	var h slog.Handler = slog.NewJSONHandler(logOutput, &slog.HandlerOptions{Level: l})
	if logHold != nil {
		h = &holdingHandler{h, logHold}
	}
	return slog.New(h)
}

// flags parses a subcommand's flags; a flag error is one line, not a dump
// of the flag set.
// pathFlags name files: a file name may be any bytes.
var pathFlags = map[string]bool{"client-file": true}

func flags(name string, args []string, define func(fs *flag.FlagSet)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	define(fs)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	// No id, address or name is other than UTF-8 (PostgreSQL would answer
	// with an error of its own).
	var bad error
	fs.Visit(func(f *flag.Flag) {
		if v := f.Value.String(); bad == nil && !pathFlags[f.Name] && !utf8.ValidString(v) {
			bad = fmt.Errorf("%s: --%s %q: not valid UTF-8", name, f.Name, v)
		}
	})
	return bad
}

// openApp opens the provider for an administrative command. It leaves the
// signing keys alone: only serve makes them (and keys rotate, explicitly),
// so that a command run without the servers' IDP_SIGNING_ALG does not make
// a key of another algorithm current. It returns the new embedded store
// it made, if any (madeStore.said).
func openApp(ctx context.Context) (*app.App, *madeStore, error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, nil, err
	}
	made := storeToMake(cfg)
	a, err := app.Open(ctx, cfg, app.Options{Logger: newLogger("warn"), LeaveKeys: true})
	if err != nil {
		made.said()
		return nil, nil, err
	}
	return a, made, nil
}

// madeStore is the embedded store that opening it makes when it finds
// none where the configuration puts it (the default, ./data/idp.db, is
// relative). A failed command does not remove it: another command may
// have made it first and written to it meanwhile; a failure's arguments are
// checked before any store is opened.
type madeStore struct{ db string }

// storeToMake is the store opening cfg's will make (nil: none, or
// PostgreSQL).
func storeToMake(cfg config.Config) *madeStore {
	if !cfg.Embedded() {
		return nil
	}
	db, err := filepath.Abs(cfg.SQLitePath())
	if _, serr := os.Lstat(db); err != nil || !errors.Is(serr, fs.ErrNotExist) {
		return nil
	}
	return &madeStore{db: db}
}

// said warns where the store a command made is: run in another directory
// than the server, a command changes a store no server reads. (A failed
// command's warning is folded into its error's line: runMain.)
func (m *madeStore) said() {
	if m == nil {
		return
	}
	if _, err := os.Lstat(m.db); err == nil { // made indeed (an open may fail before it)
		newLogger("warn").Warn("no embedded store was found, so a new one was made: a server started in another directory, "+
			"or with another IDP_DATABASE_URL, does not read it", "path", m.db)
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func serve(ctx context.Context, args []string) error {
	if err := flags("serve", args, func(*flag.FlagSet) {}); err != nil {
		return err
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(log)
	// The first SIGTERM or SIGINT ends ctx (the drain begins); another one
	// ends a drain under way at once (runServers reads hurry only while it
	// drains); any other exits at once, without waiting for the requests
	// in flight and the mails being sent (a second Ctrl-C was ignored).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	hurry, returned := make(chan os.Signal), make(chan struct{})
	defer close(returned)
	go func() {
		for n := 1; ; n++ {
			select {
			case s := <-sigs:
				if n == 1 {
					stop()
					continue
				}
				select {
				case hurry <- s: // the drain ends
				default:
					logHold.exiting(log, s)
					exitNow(1)
					return
				}
			case <-returned:
				return
			}
		}
	}()
	a, err := app.Open(ctx, cfg, app.Options{Logger: log})
	if err != nil {
		return err
	}
	defer a.Close()
	if limit, ok := app.TuneGC(os.Getenv, a.Hasher.Memory()); ok {
		log.Info("garbage collector tuned for the password hashes (set GOGC or GOMEMLIMIT to choose)", "limit_mib", limit>>20)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	servers := []served{{name: "public", ln: ln, h: a.Handler()}}
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s (IDP_METRICS_LISTEN): %w", cfg.MetricsListen, err)
		}
		servers = append(servers, served{name: "metrics", ln: mln, h: a.MetricsHandler()})
	}
	// The cleanup and the mail sender run as long as the listeners serve,
	// the drain included (a reset requested then gets its mail at once),
	// and after them until the work requests left for after their answers
	// is done; they stop (and the mails still due are sent) before the
	// store closes: stopJobs runs before the deferred a.Close.
	stopJobs := a.StartJobs(5 * time.Minute)
	defer stopJobs()
	log.Info("serving", "issuer", cfg.Issuer, "listen", ln.Addr().String(), "metrics", cfg.MetricsListen, "store", storeKind(cfg))
	h := hooksOf(ctx)
	logHold.release(ctx) // started: what it logged so far, and from now on, as it goes
	h.serving()
	return runServers(ctx, log, shutdown{
		drain: cfg.ShutdownDrain, grace: shutdownGrace, hurry: hurry,
		draining: func() { a.Web.Drain(); h.draining() },
	}, servers...)
}

// exitNow ends the process (a test's stand-in in tests).
var exitNow = os.Exit

// serveHooks are what tests of serve wait on instead of polling it:
// serving is called once the listeners are open (requests are answered
// from then on), draining once the drain has begun (/readyz answers 503).
// They come with run's context (withServeHooks); serve without them calls
// nothing.
type serveHooks struct{ serving, draining func() }

type serveHooksKey struct{}

func withServeHooks(ctx context.Context, h serveHooks) context.Context {
	return context.WithValue(ctx, serveHooksKey{}, h)
}

func hooksOf(ctx context.Context) serveHooks {
	h, _ := ctx.Value(serveHooksKey{}).(serveHooks)
	if h.serving == nil {
		h.serving = func() {}
	}
	if h.draining == nil {
		h.draining = func() {}
	}
	return h
}

// shutdownGrace is how long a shutdown waits for requests in flight (less
// than the usual 30 s a process manager waits after SIGTERM).
const shutdownGrace = 25 * time.Second

// served is one listener and what it serves.
type served struct {
	name string
	ln   net.Listener
	h    http.Handler
}

// shutdown is how runServers stops once its context ends.
type shutdown struct {
	// drain is how long the listeners keep serving first (IDP_SHUTDOWN_DRAIN),
	// with draining called at its start: the readiness check fails, so that
	// load balancers send new requests elsewhere before the port closes.
	drain    time.Duration
	draining func()
	// hurry ends the drain early (a second SIGTERM or SIGINT).
	hurry <-chan os.Signal
	// grace is how long the requests in flight then get to finish.
	grace time.Duration
}

// runServers serves every listener until ctx ends or one of them fails.
// When ctx ends it drains (see shutdown), then shuts them all down
// gracefully: they stop accepting at once, and the requests in flight get
// up to sd.grace to finish. A failed listener skips the drain.
func runServers(ctx context.Context, log *slog.Logger, sd shutdown, ss ...served) error {
	errc := make(chan error, len(ss))
	srvs := make([]*http.Server, len(ss))
	for i, s := range ss {
		srvs[i] = &http.Server{
			Handler:           s.h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		go func() {
			if err := srvs[i].Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s listener: %w", s.name, err)
			}
		}()
	}
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		if sd.draining != nil {
			sd.draining()
		}
		if sd.drain > 0 {
			err = drain(log, sd, errc)
		}
	}
	log.Info("shutting down: finishing requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), sd.grace)
	defer cancel()
	for _, srv := range srvs {
		if serr := srv.Shutdown(shutdownCtx); serr != nil && err == nil {
			err = fmt.Errorf("shutdown: %w", serr)
		}
	}
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// drain waits out sd.drain while the listeners serve, unless a second
// signal or a listener's failure (returned) ends it first.
func drain(log *slog.Logger, sd shutdown, errc <-chan error) error {
	log.Info("draining: /readyz answers 503 while the listeners still serve", "drain", sd.drain.String())
	t := time.NewTimer(sd.drain)
	defer t.Stop()
	select {
	case <-t.C:
	case s := <-sd.hurry:
		log.Info("second signal: the drain ends now", "signal", s.String())
	case err := <-errc:
		return err
	}
	return nil
}

func storeKind(cfg config.Config) string {
	if cfg.Embedded() {
		return "sqlite"
	}
	return "postgres"
}

func migrate(ctx context.Context, args []string) error {
	if err := flags("migrate", args, func(*flag.FlagSet) {}); err != nil {
		return err
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	st, err := app.OpenStore(ctx, cfg, true)
	if err != nil {
		return err
	}
	return st.Close()
}

func userCreate(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	var nu app.NewUser
	var fromStdin bool
	if err := flags("user create", args, func(fs *flag.FlagSet) {
		fs.StringVar(&nu.Email, "email", "", "")
		fs.StringVar(&nu.Name, "name", "", "")
		fs.StringVar(&nu.Locale, "locale", "", "")
		fs.BoolVar(&fromStdin, "password-stdin", false, "")
	}); err != nil {
		return err
	}
	if nu.Email == "" {
		return errors.New("user create: --email is required")
	}
	if !fromStdin {
		return errors.New("user create: --password-stdin is required (the password is the first line of stdin)")
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("user create: read password: %w", err)
	}
	nu.Password = strings.TrimRight(line, "\r\n")
	if err := nu.Check(); err != nil {
		return fmt.Errorf("user create: %w", err) // before a store is opened, or made
	}
	return withApp(ctx, "user create", stdout, func(a *app.App) (any, error) {
		u, err := a.CreateUser(ctx, nu)
		if err != nil {
			return nil, err
		}
		return map[string]string{"id": u.ID, "email": u.Email}, nil
	})
}

// multi collects a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func clientCreate(ctx context.Context, args []string, stdout io.Writer) error {
	var nc app.NewClient
	var redirects, postLogout multi
	if err := flags("client create", args, func(fs *flag.FlagSet) {
		fs.StringVar(&nc.ID, "id", "", "")
		fs.StringVar(&nc.Name, "name", "", "")
		fs.Var(&redirects, "redirect-uri", "")
		fs.Var(&postLogout, "post-logout-redirect-uri", "")
		fs.BoolVar(&nc.Public, "public", false, "")
		fs.BoolVar(&nc.FirstParty, "first-party", false, "")
	}); err != nil {
		return err
	}
	if nc.ID == "" || nc.Name == "" {
		return errors.New("client create: --id and --name are required")
	}
	nc.RedirectURIs, nc.PostLogoutRedirectURIs = redirects, postLogout
	if err := nc.Check(); err != nil {
		return fmt.Errorf("client create: %w", err) // before a store is opened, or made
	}
	return withApp(ctx, "client create", stdout, func(a *app.App) (any, error) {
		c, secret, err := a.CreateClient(ctx, nc)
		if err != nil {
			return nil, err
		}
		out := map[string]string{"client_id": c.ID}
		if secret != "" {
			out["client_secret"] = secret
		}
		return out, nil
	})
}

// optString is a string flag that knows whether it was given.
type optString struct{ v *string }

func (o *optString) String() string {
	if o.v == nil {
		return ""
	}
	return *o.v
}
func (o *optString) Set(v string) error { o.v = &v; return nil }

// optBool is a boolean flag (--x, --x=true, --x=false) that knows whether it
// was given.
type optBool struct{ v *bool }

func (o *optBool) String() string   { return strconv.FormatBool(o.v != nil && *o.v) }
func (o *optBool) IsBoolFlag() bool { return true }
func (o *optBool) Set(v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("want true or false")
	}
	o.v = &b
	return nil
}

func clientUpdate(ctx context.Context, args []string, stdout io.Writer) error {
	var id string
	var name optString
	var firstParty optBool
	var redirects, postLogout multi
	if err := flags("client update", args, func(fs *flag.FlagSet) {
		fs.StringVar(&id, "id", "", "")
		fs.Var(&name, "name", "")
		fs.Var(&redirects, "redirect-uri", "")
		fs.Var(&postLogout, "post-logout-redirect-uri", "")
		fs.Var(&firstParty, "first-party", "")
	}); err != nil {
		return err
	}
	if id == "" {
		return errors.New("client update: --id is required")
	}
	if name.v == nil && redirects == nil && postLogout == nil && firstParty.v == nil {
		return errors.New("client update: nothing to change (--name, --redirect-uri, --post-logout-redirect-uri, --first-party)")
	}
	if len(postLogout) == 1 && postLogout[0] == "" {
		postLogout = multi{} // --post-logout-redirect-uri '': none (a client needs no post-logout URI)
	}
	ch := app.ClientChange{Name: name.v, RedirectURIs: redirects, PostLogoutRedirectURIs: postLogout, FirstParty: firstParty.v}
	if err := ch.Check(); err != nil {
		return fmt.Errorf("client update: %w", err) // before a store is opened, or made
	}
	return withApp(ctx, "client update", stdout, func(a *app.App) (any, error) {
		c, err := a.UpdateClient(ctx, id, ch)
		if err != nil {
			return nil, err
		}
		return clientJSONOf(c), nil
	})
}

func clientRotateSecret(ctx context.Context, args []string, stdout io.Writer) error {
	var id string
	var keepOld time.Duration
	if err := flags("client rotate-secret", args, func(fs *flag.FlagSet) {
		fs.StringVar(&id, "id", "", "")
		fs.DurationVar(&keepOld, "keep-old", 0, "")
	}); err != nil {
		return err
	}
	if id == "" {
		return errors.New("client rotate-secret: --id is required")
	}
	return withApp(ctx, "client rotate-secret", stdout, func(a *app.App) (any, error) {
		secret, oldUntil, err := a.RotateClientSecret(ctx, id, keepOld)
		if err != nil {
			return nil, err
		}
		out := map[string]any{"client_id": id, "client_secret": secret}
		if !oldUntil.IsZero() {
			out["old_secret_until"] = oldUntil.UTC()
		}
		return out, nil
	})
}

// clientJSON is how client list shows a client (never its secret's hash).
type clientJSON struct {
	ID                     string    `json:"client_id"`
	Name                   string    `json:"name"`
	RedirectURIs           []string  `json:"redirect_uris"`
	PostLogoutRedirectURIs []string  `json:"post_logout_redirect_uris"`
	Public                 bool      `json:"public"`
	FirstParty             bool      `json:"first_party"`
	CreatedAt              time.Time `json:"created_at"`
}

func clientJSONOf(c *store.Client) clientJSON {
	return clientJSON{
		ID: c.ID, Name: c.Name, RedirectURIs: c.RedirectURIs,
		PostLogoutRedirectURIs: append([]string{}, c.PostLogoutRedirectURIs...),
		Public:                 c.Public, FirstParty: c.FirstParty, CreatedAt: c.CreatedAt.UTC(),
	}
}

// adminCommand is an administrative command that names at most one user
// (--email) or client (--id), runs on the provider and prints its result
// as JSON.
type adminCommand struct {
	flag string // the required flag, "email" or "id"; "": none
	do   func(ctx context.Context, a *app.App, arg string) (any, error)
}

var adminCommands = map[string]adminCommand{
	"user reset-mfa": {"email", func(ctx context.Context, a *app.App, email string) (any, error) {
		u, reset, err := a.ResetMFA(ctx, email)
		if err != nil {
			return nil, err
		}
		// reset false: the user had no two-step verification, so nothing
		// was done (a support script may run this twice).
		return map[string]any{"id": u.ID, "email": u.Email, "mfa": false, "reset": reset}, nil
	}},
	"user show": {"email", func(ctx context.Context, a *app.App, email string) (any, error) {
		u, err := a.UserByEmail(ctx, email)
		if err != nil {
			return nil, err
		}
		out := map[string]any{
			"id": u.ID, "email": u.Email, "name": u.Name, "locale": u.Locale, "mfa": u.MFAEnabled,
			"email_verified": !u.EmailVerifiedAt.IsZero(), "disabled": !u.DisabledAt.IsZero(),
			"created_at": u.CreatedAt.UTC(),
		}
		if !u.DisabledAt.IsZero() {
			out["disabled_at"] = u.DisabledAt.UTC()
		}
		return out, nil
	}},
	"user disable": {"email", func(ctx context.Context, a *app.App, email string) (any, error) {
		return disabledJSON(a.SetUserDisabled(ctx, email, true))
	}},
	"user enable": {"email", func(ctx context.Context, a *app.App, email string) (any, error) {
		return disabledJSON(a.SetUserDisabled(ctx, email, false))
	}},
	"user delete": {"email", func(ctx context.Context, a *app.App, email string) (any, error) {
		u, err := a.DeleteUser(ctx, email)
		if err != nil {
			return nil, err
		}
		return map[string]any{"id": u.ID, "email": u.Email, "deleted": true}, nil
	}},
	"client list": {"", func(ctx context.Context, a *app.App, _ string) (any, error) {
		cs, err := a.Store.ListClients(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]clientJSON, 0, len(cs))
		for i := range cs {
			out = append(out, clientJSONOf(&cs[i]))
		}
		return out, nil
	}},
	"client delete": {"id", func(ctx context.Context, a *app.App, id string) (any, error) {
		if err := a.DeleteClient(ctx, id); err != nil {
			return nil, err
		}
		return map[string]any{"client_id": id, "deleted": true}, nil
	}},
	"keys rotate": {"", func(ctx context.Context, a *app.App, _ string) (any, error) {
		kid, err := a.Keys.Rotate(ctx)
		if err != nil {
			return nil, err
		}
		return map[string]string{"kid": kid}, nil
	}},
}

// run parses the command line of cmd, opens the provider and runs c; an
// error is one line, prefixed with cmd.
func (c adminCommand) run(ctx context.Context, cmd string, args []string, stdout io.Writer) error {
	var arg string
	if err := flags(cmd, args, func(fs *flag.FlagSet) {
		if c.flag != "" {
			fs.StringVar(&arg, c.flag, "", "")
		}
	}); err != nil {
		return err
	}
	if c.flag != "" && arg == "" {
		return fmt.Errorf("%s: --%s is required", cmd, c.flag)
	}
	return withApp(ctx, cmd, stdout, func(a *app.App) (any, error) { return c.do(ctx, a, arg) })
}

// withApp opens the provider for the command cmd, runs do and prints its
// result as JSON; an error of do is one line, prefixed with cmd.
func withApp(ctx context.Context, cmd string, stdout io.Writer, do func(a *app.App) (any, error)) error {
	a, made, err := openApp(ctx)
	if err != nil {
		return err
	}
	out, err := do(a)
	a.Close()
	made.said()
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if err := printJSON(stdout, out); err != nil {
		// Committed already: say so, rather than let a retry fail as a
		// duplicate with no word of what was made.
		hint := ""
		if js, _ := json.Marshal(out); bytes.Contains(js, []byte(`"client_secret":"`)) {
			hint = "; its secret is lost: run idp client rotate-secret for a new one"
		}
		return fmt.Errorf("%s: done, but its output could not be written (%w)%s", cmd, err, hint)
	}
	return nil
}

// disabledJSON is what user disable and enable print.
func disabledJSON(u *store.User, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return map[string]any{"id": u.ID, "email": u.Email, "disabled": !u.DisabledAt.IsZero()}, nil
}
