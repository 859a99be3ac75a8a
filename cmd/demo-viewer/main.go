// Command demo-viewer is the demo relying party of `make run`: a stand-in
// for the camera viewer that logs in through the provider with the
// authorization code flow and PKCE, and shows the ID token's claims, amr
// first.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
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
	if err := run(*issuer, *listen, *base, *clientFile); err != nil {
		log.Fatalf("demo-viewer: %v", err)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(issuer, listen, base, clientFile string) error {
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
	// The provider may still be starting: wait for its discovery document.
	ctx := context.Background()
	var provider *oidc.Provider
	for delay := 100 * time.Millisecond; ; delay *= 2 {
		if provider, err = oidc.NewProvider(ctx, issuer); err == nil {
			break
		}
		if delay > 10*time.Second {
			return fmt.Errorf("discovery at %s: %w", issuer, err)
		}
		time.Sleep(delay)
	}
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = provider.Claims(&meta)
	v := &viewer{
		provider: provider, endSession: meta.EndSession, base: base,
		verifier: provider.Verifier(&oidc.Config{ClientID: creds.ID}),
		oauth: oauth2.Config{
			ClientID: creds.ID, ClientSecret: creds.Secret, Endpoint: provider.Endpoint(),
			RedirectURL: base + "/callback", Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
		},
		sessions: map[string]*claims{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", v.home)
	mux.HandleFunc("GET /login", v.login)
	mux.HandleFunc("GET /callback", v.callback)
	mux.HandleFunc("GET /logout", v.logout)
	log.Printf("demo viewer on %s (provider %s)", base, issuer)
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

type viewer struct {
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      oauth2.Config
	endSession string
	base       string

	mu       sync.Mutex
	sessions map[string]*claims // by cookie value
}

type claims struct {
	Subject  string   `json:"sub"`
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	AuthTime int64    `json:"auth_time"`
	AMR      []string `json:"amr"`
	Raw      string   `json:"-"`
	IDToken  string   `json:"-"`
}

func random() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (v *viewer) current(r *http.Request) *claims {
	c, err := r.Cookie("viewer_session")
	if err != nil {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.sessions[c.Value]
}

func (v *viewer) home(w http.ResponseWriter, r *http.Request) {
	render(w, v.current(r), "")
}

// login starts the code flow with PKCE; state, nonce and verifier wait in
// a short-lived cookie.
func (v *viewer) login(w http.ResponseWriter, r *http.Request) {
	state, nonce, verifier := random(), random(), oauth2.GenerateVerifier()
	http.SetCookie(w, &http.Cookie{
		Name: "viewer_login", Value: url.Values{"s": {state}, "n": {nonce}, "v": {verifier}}.Encode(),
		Path: "/", MaxAge: 600, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, v.oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

func (v *viewer) callback(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("viewer_login")
	if err != nil {
		render(w, nil, "ログインをやり直してください (no login in progress)")
		return
	}
	pending, _ := url.ParseQuery(c.Value)
	http.SetCookie(w, &http.Cookie{Name: "viewer_login", Path: "/", MaxAge: -1})
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		render(w, nil, "ログインできませんでした: "+e+" "+q.Get("error_description"))
		return
	}
	if q.Get("state") == "" || q.Get("state") != pending.Get("s") {
		render(w, nil, "state mismatch")
		return
	}
	tok, err := v.oauth.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(pending.Get("v")))
	if err != nil {
		render(w, nil, "code exchange failed: "+err.Error())
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := v.verifier.Verify(r.Context(), raw)
	if err != nil || idt.Nonce != pending.Get("n") {
		render(w, nil, fmt.Sprintf("ID token rejected: %v", err))
		return
	}
	cl := &claims{IDToken: raw}
	var all map[string]any
	if err := idt.Claims(cl); err != nil || idt.Claims(&all) != nil {
		render(w, nil, "ID token claims: "+err.Error())
		return
	}
	pretty, _ := json.MarshalIndent(all, "", "  ")
	cl.Raw = string(pretty)
	id := random()
	v.mu.Lock()
	v.sessions[id] = cl
	v.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "viewer_session", Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusFound)
}

// logout forgets the local session and asks the provider to end its own.
func (v *viewer) logout(w http.ResponseWriter, r *http.Request) {
	cl := v.current(r)
	if c, err := r.Cookie("viewer_session"); err == nil {
		v.mu.Lock()
		delete(v.sessions, c.Value)
		v.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: "viewer_session", Path: "/", MaxAge: -1})
	if v.endSession == "" || cl == nil {
		http.Redirect(w, r, "/", http.StatusFound)
		return
	}
	q := url.Values{"id_token_hint": {cl.IDToken}, "post_logout_redirect_uri": {v.base + "/"}, "client_id": {v.oauth.ClientID}}
	http.Redirect(w, r, v.endSession+"?"+q.Encode(), http.StatusFound)
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"otp":  func(amr []string) bool { return slices.Contains(amr, "otp") },
	"time": func(s int64) string { return time.Unix(s, 0).Format("2006-01-02 15:04:05 MST") },
}).Parse(`<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>カメラビューア (デモ)</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.6}
pre{background:#f4f4f4;padding:1rem;overflow:auto}.ok{color:#0a7d32}.warn{color:#a15c00}.err{color:#b00020}</style>
</head><body>
<h1>カメラビューア <small>(demo relying party)</small></h1>
{{with .Error}}<p class="err" role="alert">{{.}}</p>{{end}}
{{with .Claims}}
<p>ログイン中: <strong>{{.Email}}</strong> {{.Name}}</p>
<p>amr: <code>{{.AMR}}</code> —
{{if otp .AMR}}<span class="ok">2段階認証: 済み (two-step verification done)</span>{{else}}<span class="warn">パスワードのみ (password only)</span>{{end}}</p>
<p>auth_time: {{time .AuthTime}}</p>
<h2>ID token</h2><pre>{{.Raw}}</pre>
<p><a href="/logout">ログアウト</a></p>
{{else}}
<p><a href="/login">ログイン</a> (log in through the identity provider)</p>
{{end}}
</body></html>`))

func render(w http.ResponseWriter, c *claims, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if msg != "" {
		w.WriteHeader(http.StatusBadRequest)
	}
	if err := page.Execute(w, struct {
		Claims *claims
		Error  string
	}{c, msg}); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		log.Printf("render: %v", err)
	}
}
