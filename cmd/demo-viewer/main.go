// Command demo-viewer is the demo relying party of `make run`: a stand-in
// for the camera viewer that logs in through the provider with the
// authorization code flow and PKCE, and shows the ID token's claims, amr
// first.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

func main() {
	issuer := flag.String("issuer", envOr("IDP_ISSUER", "http://localhost:8080"), "the provider's issuer URL")
	listen := flag.String("listen", "127.0.0.1:9090", "listen address")
	base := flag.String("base-url", "http://localhost:9090", "this viewer's own URL")
	clientFile := flag.String("client-file", "./data/demo-client.json", "client_id and client_secret, as written by `idp demo-setup`")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *issuer, *listen, strings.TrimSuffix(*base, "/"), *clientFile); err != nil {
		log.Fatalf("demo-viewer: %v", err)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, issuer, listen, base, clientFile string) error {
	b, err := os.ReadFile(clientFile)
	if err != nil {
		return fmt.Errorf("%w (run `idp demo-setup` first)", err)
	}
	var creds struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		return fmt.Errorf("%s: %w", clientFile, err)
	}
	if creds.ID == "" {
		return fmt.Errorf("%s: no client_id", clientFile)
	}
	provider, err := discover(ctx, issuer, 30*time.Second)
	if ctx.Err() != nil {
		return nil // stopped while waiting for the provider
	}
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: listen, Handler: newViewer(provider, creds.ID, creds.Secret, base), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("camera viewer (demo) on %s, provider %s", base, issuer)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// discover fetches the provider's discovery document, retrying with backoff
// for up to wait: `make run` starts the provider and the viewer together.
func discover(ctx context.Context, issuer string, wait time.Duration) (*oidc.Provider, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		p, err := oidc.NewProvider(attempt, issuer)
		cancelAttempt()
		var mismatch *oidc.IssuerMismatchError
		if err == nil || errors.As(err, &mismatch) {
			return p, err // a wrong issuer does not fix itself
		}
		if delay == 100*time.Millisecond {
			log.Printf("waiting for the provider at %s", issuer)
		}
		select {
		case <-ctx.Done():
			first, _, _ := strings.Cut(err.Error(), "\n") // not a whole HTML error page
			return nil, fmt.Errorf("discovery at %s: %s", issuer, first)
		case <-time.After(delay):
		}
	}
}

type viewer struct {
	verifier   *oidc.IDTokenVerifier
	oauth      oauth2.Config
	issuer     string
	endSession string // from discovery; empty if the provider has none
	base       string
	secure     bool // cookies get Secure when base is https

	mu       sync.Mutex
	sessions map[string]*session // by viewer_session cookie
}

// session is what a login leaves: the ID token and its claims.
type session struct {
	Subject  string   `json:"sub"`
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	AuthTime int64    `json:"auth_time"`
	AMR      []string `json:"amr"`
	Raw      string   `json:"-"` // all claims, indented JSON
	IDToken  string   `json:"-"`
}

func newViewer(p *oidc.Provider, clientID, secret, base string) http.Handler {
	var meta struct {
		Issuer     string `json:"issuer"`
		EndSession string `json:"end_session_endpoint"`
	}
	_ = p.Claims(&meta)
	v := &viewer{
		verifier: p.Verifier(&oidc.Config{ClientID: clientID}),
		oauth: oauth2.Config{
			ClientID: clientID, ClientSecret: secret, Endpoint: p.Endpoint(),
			RedirectURL: base + "/callback", Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
		},
		issuer: meta.Issuer, endSession: meta.EndSession,
		base: base, secure: strings.HasPrefix(base, "https://"), sessions: map[string]*session{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { v.render(w, http.StatusOK, v.current(r), "") })
	mux.HandleFunc("GET /login", v.login)
	mux.HandleFunc("GET /callback", v.callback)
	mux.HandleFunc("GET /logout", v.logout)
	return mux
}

func (v *viewer) current(r *http.Request) *session {
	c, err := r.Cookie("viewer_session")
	if err != nil {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.sessions[c.Value]
}

// login starts the code flow with PKCE (S256); state, nonce and verifier
// wait for the callback in a short-lived cookie. ?prompt=login asks the
// provider for a fresh login (and its second step).
func (v *viewer) login(w http.ResponseWriter, r *http.Request) {
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	http.SetCookie(w, &http.Cookie{
		Name: "viewer_login", Value: url.Values{"s": {state}, "n": {nonce}, "v": {verifier}}.Encode(),
		Path: "/callback", MaxAge: 600, HttpOnly: true, Secure: v.secure, SameSite: http.SameSiteLaxMode,
	})
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	if r.URL.Query().Get("prompt") == "login" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
	}
	http.Redirect(w, r, v.oauth.AuthCodeURL(state, opts...), http.StatusFound)
}

// callback checks state, exchanges the code with the PKCE verifier, and
// verifies the ID token, nonce included.
func (v *viewer) callback(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("viewer_login")
	if err != nil {
		v.render(w, http.StatusBadRequest, nil, "ログインをやり直してください (no login in progress)")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: "viewer_login", Path: "/callback", MaxAge: -1})
	pending, _ := url.ParseQuery(c.Value)
	q := r.URL.Query()
	if q.Get("state") == "" || q.Get("state") != pending.Get("s") {
		v.render(w, http.StatusBadRequest, nil, "state が一致しません (state mismatch)")
		return
	}
	if e := q.Get("error"); e != "" {
		v.render(w, http.StatusBadRequest, nil, "ログインできませんでした: "+e+" "+q.Get("error_description"))
		return
	}
	tok, err := v.oauth.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(pending.Get("v")))
	if err != nil {
		v.render(w, http.StatusBadGateway, nil, "code exchange failed: "+err.Error())
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := v.verifier.Verify(r.Context(), raw)
	if err == nil && idt.Nonce != pending.Get("n") {
		err = errors.New("nonce mismatch")
	}
	s := &session{IDToken: raw}
	var all map[string]any
	if err == nil {
		err = errors.Join(idt.Claims(s), idt.Claims(&all))
	}
	if err != nil {
		v.render(w, http.StatusBadGateway, nil, "ID token rejected: "+err.Error())
		return
	}
	pretty, _ := json.MarshalIndent(all, "", "  ")
	s.Raw = string(pretty)
	id := rand.Text()
	v.mu.Lock()
	v.sessions[id] = s
	v.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "viewer_session", Value: id, Path: "/", HttpOnly: true, Secure: v.secure, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusFound)
}

// logout forgets the local session and sends the browser to the provider's
// end_session_endpoint (RP-initiated logout), which comes back to base + "/".
func (v *viewer) logout(w http.ResponseWriter, r *http.Request) {
	s := v.current(r)
	if c, err := r.Cookie("viewer_session"); err == nil {
		v.mu.Lock()
		delete(v.sessions, c.Value)
		v.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: "viewer_session", Path: "/", MaxAge: -1})
	if v.endSession == "" || s == nil {
		http.Redirect(w, r, "/", http.StatusFound)
		return
	}
	q := url.Values{"id_token_hint": {s.IDToken}, "post_logout_redirect_uri": {v.base + "/"}, "client_id": {v.oauth.ClientID}}
	http.Redirect(w, r, v.endSession+"?"+q.Encode(), http.StatusFound)
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"otp": func(amr []string) bool { return slices.Contains(amr, "otp") },
	"time": func(s int64) string {
		if s == 0 {
			return "-"
		}
		return time.Unix(s, 0).Format("2006-01-02 15:04:05 MST")
	},
}).Parse(`<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>カメラビューア (デモ)</title>
<style>body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;line-height:1.6}
th{text-align:left;padding-right:1rem}pre{background:#f4f4f4;padding:1rem;overflow:auto}
.amr{font-size:1.3rem;padding:.6rem 1rem;border-radius:.4rem}.ok{background:#e3f5e9;color:#0a6b2b}
.warn{background:#fff3e0;color:#8a4b00}.err{color:#b00020}</style>
</head><body>
<h1>カメラビューア <small>(demo relying party)</small></h1>
{{with .Error}}<p class="err" role="alert">{{.}}</p>{{end}}
{{with .S}}
{{if otp .AMR}}<p class="amr ok" id="amr">2段階認証: 済み <small>(two-step verification done)</small></p>
{{else}}<p class="amr warn" id="amr">2段階認証: 未 — パスワードのみ <small>(password only)</small></p>{{end}}
<table>
<tr><th>amr</th><td><code>{{.AMR}}</code></td></tr>
<tr><th>sub</th><td><code>{{.Subject}}</code></td></tr>
<tr><th>email</th><td>{{.Email}}</td></tr>
<tr><th>name</th><td>{{.Name}}</td></tr>
<tr><th>auth_time</th><td>{{time .AuthTime}}</td></tr>
</table>
<details><summary>ID token claims</summary><pre>{{.Raw}}</pre></details>
<p><a href="/logout">ログアウト</a> · <a href="/login?prompt=login">もう一度ログイン (prompt=login)</a>
· <a href="{{$.Issuer}}/account/2fa">2段階認証の設定 (My Page)</a></p>
{{else}}
<p>ログインしていません (not logged in).</p>
<p><a href="/login">ログイン</a> (log in through the identity provider)</p>
{{end}}
</body></html>`))

func (v *viewer) render(w http.ResponseWriter, status int, s *session, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := page.Execute(w, map[string]any{"S": s, "Error": msg, "Issuer": strings.TrimSuffix(v.issuer, "/")}); err != nil {
		log.Printf("render: %v", err)
	}
}
