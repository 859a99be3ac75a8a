// Package oidc composes fosite once into the provider's OAuth 2.0 and OpenID
// Connect endpoints: authorization (the parts that do not need a login
// page), token, userinfo, revocation, introspection, discovery and JWKS.
package oidc

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/kamera-id/idp/idp/metrics"
	"github.com/kamera-id/idp/idp/store"
)

// Paths of the protocol endpoints, relative to the issuer.
const (
	PathAuthorize  = "/oauth2/auth"
	PathToken      = "/oauth2/token"
	PathUserinfo   = "/userinfo"
	PathJWKS       = "/.well-known/jwks.json"
	PathDiscovery  = "/.well-known/openid-configuration"
	PathRevoke     = "/oauth2/revoke"
	PathIntrospect = "/oauth2/introspect"
	PathEndSession = "/logout"
)

// Config is what the provider needs to know.
type Config struct {
	Issuer          string
	SigningAlg      string // RS256 or ES256
	HMACSecret      []byte // 32 bytes shared by every instance (derived from the master key)
	SecretHasher    fosite.Hasher
	AccessTokenTTL  time.Duration
	IDTokenTTL      time.Duration
	RefreshTokenTTL time.Duration
	// RefreshGrace: Storage.RefreshGrace.
	RefreshGrace time.Duration
	AuthCodeTTL  time.Duration
	Logger       *slog.Logger
	// Metrics counts the tokens issued; nil records nothing.
	Metrics metrics.Recorder
}

// Provider is the composed fosite provider and its HTTP handlers.
type Provider struct {
	cfg     Config
	origins publicOrigins // for cross-origin reads (cors.go)
	OAuth2  fosite.OAuth2Provider
	Storage *Storage
	keys    KeySource
	store   store.Store
	log     *slog.Logger
	metrics metrics.Recorder
	disco   []byte
}

// New composes fosite for the authorization code flow with PKCE (S256
// only, required for every client), OpenID Connect ID tokens, refresh tokens
// with rotation, revocation and introspection.
func New(cfg Config, st store.Store, keys KeySource) (*Provider, error) {
	if len(cfg.HMACSecret) < 32 {
		return nil, errors.New("oidc: HMAC secret must be at least 32 bytes")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	fc := &fosite.Config{
		IDTokenIssuer:                  cfg.Issuer,
		AccessTokenIssuer:              cfg.Issuer,
		AccessTokenLifespan:            cfg.AccessTokenTTL,
		IDTokenLifespan:                cfg.IDTokenTTL,
		RefreshTokenLifespan:           cfg.RefreshTokenTTL,
		AuthorizeCodeLifespan:          cfg.AuthCodeTTL,
		GlobalSecret:                   cfg.HMACSecret,
		EnforcePKCE:                    true,
		EnablePKCEPlainChallengeMethod: false,
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       fosite.DefaultAudienceMatchingStrategy,
		ClientSecretsHasher:            cfg.SecretHasher,
		RefreshTokenScopes:             []string{"offline_access"},
		SendDebugMessagesToClients:     false,
		// A state is required, of any length, and a nonce may have any:
		// fosite's default (as Ory Hydra's) refuses either under 8
		// characters, which Keycloak, Google and others do not, and which
		// trips hand-written relying parties. Their strength is the relying
		// party's business, and PKCE S256, required of every client,
		// already ties the code to whoever asked for it (RFC 9700 2.1).
		MinParameterEntropy: 1,
		// What the code's record keeps of the authorization request: the
		// PKCE and OpenID Connect parameters too, since the PKCE and OpenID
		// Connect requests are read from it (see Storage).
		SanitationWhiteList: codeFormKeys,
	}
	storage := NewStorage(st)
	storage.RefreshGrace = cfg.RefreshGrace
	sig := signer{keys: keys}
	core := compose.NewOAuth2HMACStrategy(fc)
	storage.CodeSignature = core.AuthorizeCodeSignature
	strategy := &compose.CommonStrategy{
		CoreStrategy:               core,
		OpenIDConnectTokenStrategy: &openid.DefaultStrategy{Signer: sig, Config: fc},
		Signer:                     sig,
	}
	p := &Provider{
		cfg: cfg, Storage: storage, keys: keys, store: st, log: cfg.Logger, metrics: metrics.OrNop(cfg.Metrics),
		OAuth2: compose.Compose(fc, storage, strategy,
			compose.OAuth2AuthorizeExplicitFactory,
			compose.OAuth2RefreshTokenGrantFactory,
			compose.OAuth2TokenRevocationFactory,
			compose.OAuth2TokenIntrospectionFactory,
			compose.OAuth2PKCEFactory,
			compose.OpenIDConnectExplicitFactory,
			compose.OpenIDConnectRefreshFactory,
		),
	}
	disco, err := json.Marshal(p.discovery())
	if err != nil {
		return nil, err
	}
	p.disco = disco
	return p, nil
}

func (p *Provider) discovery() map[string]any {
	base := strings.TrimSuffix(p.cfg.Issuer, "/") // an issuer may end with a slash
	return map[string]any{
		"issuer":                                        p.cfg.Issuer,
		"authorization_endpoint":                        base + PathAuthorize,
		"token_endpoint":                                base + PathToken,
		"userinfo_endpoint":                             base + PathUserinfo,
		"jwks_uri":                                      base + PathJWKS,
		"revocation_endpoint":                           base + PathRevoke,
		"introspection_endpoint":                        base + PathIntrospect,
		"end_session_endpoint":                          base + PathEndSession,
		"response_types_supported":                      []string{"code"},
		"response_modes_supported":                      []string{"query"},
		"grant_types_supported":                         []string{"authorization_code", "refresh_token"},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         []string{p.cfg.SigningAlg},
		"scopes_supported":                              SupportedScopes,
		"token_endpoint_auth_methods_supported":         []string{"client_secret_basic", "client_secret_post", "none"},
		"revocation_endpoint_auth_methods_supported":    []string{"client_secret_basic", "client_secret_post", "none"},
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic"},
		"code_challenge_methods_supported":              []string{"S256"},
		"claims_supported": []string{
			"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "sid",
			"email", "email_verified", "name", "locale",
		},
		"claims_parameter_supported":       true,
		"request_parameter_supported":      false,
		"request_uri_parameter_supported":  false,
		"require_request_uri_registration": false,
		"ui_locales_supported":             []string{"ja", "en"},
		"prompt_values_supported":          promptValues,
		"display_values_supported":         []string{"page", "touch"},
	}
}

// Discovery serves /.well-known/openid-configuration.
func (p *Provider) Discovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(p.disco)
}

// JWKS serves the published signing keys.
func (p *Provider) JWKS(w http.ResponseWriter, r *http.Request) {
	b, err := p.keys.JWKS(r.Context())
	if err != nil {
		p.log.ErrorContext(r.Context(), "jwks", "err", err)
		WriteUnavailable(w)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(b)
}

// Token serves the token endpoint.
func (p *Provider) Token(w http.ResponseWriter, r *http.Request) {
	ctx := withCodeMemo(r.Context())
	err := checkGrant(r)
	if err == nil {
		err = p.checkPublicClient(ctx, r)
	}
	if err != nil {
		p.writeAccessError(ctx, w, r, nil, err)
		return
	}
	sess := NewSession()
	ar, err := p.OAuth2.NewAccessRequest(ctx, r, sess)
	if err == nil {
		ctx, err = narrowRefreshScope(ctx, r, ar)
	}
	if err != nil {
		p.writeAccessError(ctx, w, r, ar, err)
		return
	}
	resp, err := p.OAuth2.NewAccessResponse(ctx, ar)
	if err != nil {
		p.writeAccessError(ctx, w, r, ar, err)
		return
	}
	// "Bearer", as RFC 6750 registers the type and OpenID Connect's examples
	// write it (and Keycloak answers), where fosite writes "bearer": the
	// value is case-insensitive (RFC 6749 5.1), but not every client reads
	// it so.
	resp.SetTokenType("Bearer")
	p.OAuth2.WriteAccessResponse(ctx, w, ar, resp)
	grant := "other"
	for _, g := range []string{"authorization_code", "refresh_token"} {
		if ar.GetGrantTypes().ExactOne(g) {
			grant = g
		}
	}
	p.metrics.TokenIssued(grant)
}

// checkGrant applies to a token request what fosite does not: one client
// authentication method only; a grant type other than the two supported
// is unsupported_grant_type (RFC 6749 5.2; fosite says invalid_request),
// and a refresh request's nonce is dropped,
// since fosite would put it into the refreshed ID token (OIDC Core 12.2:
// that nonce, if any, is the original one; a caller must not choose it).
func checkGrant(r *http.Request) error {
	if r.ParseForm() != nil {
		return nil // fosite answers it
	}
	// One authentication method a request (RFC 6749 2.3); fosite would
	// take the Basic credentials and ignore the form's.
	if _, _, basic := r.BasicAuth(); basic && (r.PostForm.Has("client_secret") || r.PostForm.Has("client_assertion")) {
		return fosite.ErrInvalidRequest.WithHint("Authenticate the client one way: HTTP Basic or client_secret in the form, not both.")
	}
	switch r.PostForm.Get("grant_type") {
	case "", "authorization_code":
	case "refresh_token":
		r.PostForm.Del("nonce")
		r.Form.Del("nonce")
	default:
		return fosite.ErrUnsupportedGrantType.WithHint("The grant types supported are authorization_code and refresh_token.")
	}
	return nil
}

// checkPublicClient refuses a request of a public client that presents a
// secret (invalid_client): it has none (RFC 6749 2.1), and fosite, which
// does not check one for a public client, would take any. Unavailable
// when the client cannot be read now.
func (p *Provider) checkPublicClient(ctx context.Context, r *http.Request) error {
	if r.ParseForm() != nil {
		return nil // fosite answers it
	}
	id, secret, basic := clientCredentials(r)
	if basic {
		secret = cmp.Or(secret, r.PostForm.Get("client_secret")) // "id:" and a secret in the form
	}
	if id == "" || secret == "" {
		return nil
	}
	c, err := p.Storage.Client(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil // fosite answers it
	case err != nil:
		return err
	case c.Public:
		return fosite.ErrInvalidClient.WithHint("A public client has no secret: send none.")
	}
	return nil
}

// clientCredentials are the client id and secret of a token, revocation or
// introspection request (its form parsed) as fosite takes them: the Basic
// credentials (the id URL-decoded, RFC 6749 2.3.1) when sent, else the
// form's.
func clientCredentials(r *http.Request) (id, secret string, basic bool) {
	if id, secret, basic = r.BasicAuth(); basic {
		if unescaped, err := url.QueryUnescape(id); err == nil {
			id = unescaped
		}
		return id, secret, true
	}
	return r.PostForm.Get("client_id"), r.PostForm.Get("client_secret"), false
}

// Unavailable reports whether err (from fosite, with the storage's error in
// its chain, or from the store) means the database cannot be reached now.
func Unavailable(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// storeCause is the store's own message inside err (a fosite error's text
// is only its code, and its %+v a stack trace), for the log.
func storeCause(err error) string {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if strings.Contains(e.Error(), store.ErrUnavailable.Error()) {
			return e.Error()
		}
	}
	return err.Error()
}

// WriteUnavailable answers a protocol endpoint while the database is
// unreachable: 503 with the OAuth error temporarily_unavailable (RFC 6749
// 4.1.2.1) and a Retry-After, nothing about the cause.
func WriteUnavailable(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "5")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"The service is temporarily unavailable. Please try again later."}` + "\n"))
}

func (p *Provider) writeAccessError(ctx context.Context, w http.ResponseWriter, r *http.Request, ar fosite.AccessRequester, err error) {
	if Unavailable(err) {
		p.log.WarnContext(ctx, "token endpoint: store unavailable", "err", storeCause(err))
		WriteUnavailable(w)
		return
	}
	if errors.Is(err, store.ErrConsumed) {
		// Lost the race for a one-time code: the other request used it.
		err = fosite.ErrInvalidGrant.WithHint("The authorization code has already been used.")
		if ar != nil && ar.GetGrantTypes().ExactOne("authorization_code") {
			p.revokeReusedCode(ctx, ar.GetID())
		}
	}
	if errors.Is(err, store.ErrAccountInactive) {
		// Tokens go only to an account that exists and is not disabled
		// (store.TokenExchange); a code or refresh token of one that is
		// not is refused, and stays as it was.
		err = fosite.ErrInvalidGrant.WithHint("The account is disabled or no longer exists.")
	} else if errors.Is(err, errCodeGone) {
		err = fosite.ErrInvalidGrant.WithHint("The authorization code is not valid.")
	} else if !errors.Is(err, store.ErrConsumed) {
		if id, spent := p.Storage.issuedCodeSpent(ctx); spent {
			// A code used before (at another instance), refused here
			// before its spend: what it issued goes, as fosite does when
			// its read finds a code spent.
			p.revokeReusedCode(ctx, id)
			err = fosite.ErrInvalidGrant.WithHint("The authorization code has already been used.")
		}
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= 500 {
		p.log.ErrorContext(ctx, "token endpoint", "err", err)
	}
	if _, _, basic := r.BasicAuth(); basic && rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
		// RFC 6749 5.2: the client authenticated with the Authorization header.
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
	}
	p.OAuth2.WriteAccessError(ctx, w, ar, err)
}

// revokeReusedCode revokes the access and refresh tokens issued for the
// authorization request requestID, whose code a token request tried to
// spend while another exchange of it was running. Both read the code while
// it was unused, so fosite, which revokes what a reused code issued when it
// reads the code used (see TestCodeReuseRevokes), never saw a reuse: this
// request lost only at the spend (Commit: store.ErrConsumed). A code used
// twice is a code someone else has (RFC 6749 4.1.2 and 10.5, RFC 9700
// 4.5), so what it issued goes, as after a reuse seen at the read. The
// spend fails only once the code is inactive, that is once the winner's
// exchange has committed, in the same statement, the tokens it issued (or
// once ending the user's sessions deactivated them all): they are there to
// revoke. fosite's access request carries the authorization request's ID
// (HandleTokenEndpointRequest sets it), as do all the tokens issued under
// it, refreshed ones too.
//
// A refresh token spent by two concurrent refreshes is not treated so:
// Commit answers fosite ErrInactiveToken, which fosite's refresh handler
// turns into invalid_request ("retry") and revokes nothing. One client
// refreshing twice at once (two tabs, a retry) is benign, and must not
// end its grant; the refresh token's reuse after its rotation still does
// (fosite reads it inactive and revokes the grant).
func (p *Provider) revokeReusedCode(ctx context.Context, requestID string) {
	if requestID == "" {
		return
	}
	// Not cut short by the client hanging up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := p.Storage.revokeGrant(ctx, requestID); err != nil {
		p.log.ErrorContext(ctx, "token endpoint: revoking the tokens of a code used twice", "err", storeCause(err))
	}
}

// Revoke serves RFC 7009 revocation. fosite's writer answers 200 to any
// error but invalid_request and invalid_client, so only those and success
// go to it: a store's failure (fosite's temporarily_unavailable, without
// the cause) is a 503, as the token may still be live and the client must
// try again (RFC 7009 2.2.1); a token of another client is refused with
// unauthorized_client (RFC 7009 2.1); a client that authenticated with
// Basic credentials gets its challenge (RFC 6749 5.2).
func (p *Provider) Revoke(w http.ResponseWriter, r *http.Request) {
	ctx := withRevoking(r.Context())
	err := p.checkPublicClient(ctx, r)
	if err == nil {
		err = p.OAuth2.NewRevocationRequest(ctx, r)
	}
	switch {
	case err == nil, errors.Is(err, fosite.ErrInvalidRequest):
		p.OAuth2.WriteRevocationResponse(ctx, w, err)
		return
	case Unavailable(err), errors.Is(err, fosite.ErrTemporarilyUnavailable):
		p.log.WarnContext(ctx, "revocation: store unavailable", "err", storeCause(err))
		WriteUnavailable(w)
		return
	}
	if _, _, basic := r.BasicAuth(); basic && errors.Is(err, fosite.ErrInvalidClient) {
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
	}
	p.OAuth2.WriteAccessError(ctx, w, nil, err)
}

// Introspect serves RFC 7662 introspection to confidential clients, which
// authenticate with client_secret_basic. fosite would also take any live
// access token as the caller's credentials (a bearer token of a public
// client, say), in the Authorization header or, beside Basic credentials
// it then never checks, as an access_token parameter; both are refused.
func (p *Provider) Introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if _, _, ok := r.BasicAuth(); !ok || fosite.AccessTokenFromRequest(r) != "" {
		p.introspectionUnauthorized(ctx, w, fosite.ErrInvalidClient.WithHint("Client authentication with client_secret_basic is required."))
		return
	}
	err := p.checkPublicClient(ctx, r)
	var resp fosite.IntrospectionResponder
	if err == nil {
		resp, err = p.OAuth2.NewIntrospectionRequest(ctx, r, NewSession())
	}
	if Unavailable(err) {
		p.log.WarnContext(ctx, "introspection: store unavailable", "err", storeCause(err))
		WriteUnavailable(w)
		return
	}
	// The caller's credentials refused; an inactive token's error (which
	// may wrap request_unauthorized) is {"active": false}, as fosite has it.
	if !errors.Is(err, fosite.ErrInactiveToken) && (errors.Is(err, fosite.ErrRequestUnauthorized) || errors.Is(err, fosite.ErrInvalidClient)) {
		p.introspectionUnauthorized(ctx, w, err)
		return
	}
	if err != nil {
		p.OAuth2.WriteIntrospectionError(ctx, w, err)
		return
	}
	if resp.GetTokenUse() == fosite.RefreshToken {
		// fosite writes the access token's expiry as exp whatever the token;
		// RFC 7662 2.2's exp is the introspected token's own. The session is
		// this request's copy.
		sess := resp.GetAccessRequester().GetSession()
		sess.SetExpiresAt(fosite.AccessToken, sess.GetExpiresAt(fosite.RefreshToken))
	}
	p.OAuth2.WriteIntrospectionResponse(ctx, w, resp)
}

// introspectionUnauthorized answers an introspection whose caller did not
// authenticate: 401 invalid_client with the Basic challenge (RFC 7662 2.3
// refers to RFC 6749 5.2), where fosite answers request_unauthorized, a
// code of its own, without one.
func (p *Provider) introspectionUnauthorized(ctx context.Context, w http.ResponseWriter, err error) {
	w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
	if !errors.Is(err, fosite.ErrInvalidClient) {
		err = fosite.ErrInvalidClient.WithWrap(err)
	}
	p.OAuth2.WriteAccessError(ctx, w, nil, err)
}

// Userinfo serves the userinfo endpoint: the access token by header (GET or
// POST) or in a form body (POST). One in the URL's query (RFC 6750 2.3,
// which it says not to use: URLs are logged by proxies and load balancers
// and sent on in Referer headers) is refused, where fosite would take it.
func (p *Provider) Userinfo(w http.ResponseWriter, r *http.Request) {
	ctx, memo := withUserMemo(r.Context())
	if r.URL.Query().Has("access_token") {
		bearerError(w, "invalid_request", "send the access token in the Authorization header (or a form body), not in the URL", http.StatusBadRequest)
		return
	}
	// One method a request (RFC 6750 3.1): a token in the header and one in
	// the body would leave which was meant to the server's choice.
	if r.Header.Get("Authorization") != "" && r.Method == http.MethodPost && r.ParseForm() == nil && r.PostForm.Has("access_token") {
		bearerError(w, "invalid_request", "send the access token one way: in the Authorization header or in the form body, not both", http.StatusBadRequest)
		return
	}
	token := fosite.AccessTokenFromRequest(r)
	if token == "" {
		// No credentials at all: a bare challenge, without an error code
		// (RFC 6750 3.1).
		w.Header().Set("WWW-Authenticate", "Bearer")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	// fosite tries the token as a refresh token when it is no access token;
	// a refresh token is for the client's token endpoint only.
	use, ar, err := p.OAuth2.IntrospectToken(ctx, token, fosite.AccessToken, NewSession())
	if Unavailable(err) {
		p.log.WarnContext(ctx, "userinfo: store unavailable", "err", storeCause(err))
		WriteUnavailable(w)
		return
	}
	if err != nil || use != fosite.AccessToken {
		bearerError(w, "invalid_token", "the access token is not valid", http.StatusUnauthorized)
		return
	}
	if !ar.GetGrantedScopes().Has("openid") {
		bearerError(w, "insufficient_scope", "the openid scope was not granted", http.StatusForbidden)
		return
	}
	sess, _ := ar.GetSession().(*Session)
	if sess == nil {
		bearerError(w, "invalid_token", "the access token is not valid", http.StatusUnauthorized)
		return
	}
	u := memo.user // read with the access token
	if u == nil || u.ID != sess.GetSubject() {
		u, err = p.store.GetUser(ctx, sess.GetSubject())
	}
	if Unavailable(err) {
		p.log.WarnContext(ctx, "userinfo: store unavailable", "err", storeCause(err))
		WriteUnavailable(w)
		return
	}
	if err != nil {
		bearerError(w, "invalid_token", "the user no longer exists", http.StatusUnauthorized)
		return
	}
	if !u.DisabledAt.IsZero() {
		bearerError(w, "invalid_token", "the account is disabled", http.StatusUnauthorized)
		return
	}
	claims := UserClaims(u, ar.GetGrantedScopes(), sess.UserinfoClaims)
	claims["sub"] = u.ID
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(claims)
}

func bearerError(w http.ResponseWriter, code, desc string, status int) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error=%q, error_description=%q`, code, desc))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// UserClaims are the user's claims that the granted scopes (and claims
// asked for individually) release.
func UserClaims(u *store.User, scopes fosite.Arguments, extra []string) map[string]any {
	out := map[string]any{}
	want := func(claim string) bool {
		return scopes.Has(claimScope[claim]) || slices.Contains(extra, claim)
	}
	if want("email") {
		out["email"] = u.Email
	}
	if want("email_verified") {
		out["email_verified"] = !u.EmailVerifiedAt.IsZero()
	}
	if want("name") && u.Name != "" {
		out["name"] = u.Name
	}
	if want("locale") {
		out["locale"] = localeOrDefault(u.Locale)
	}
	return out
}

func localeOrDefault(l string) string {
	if l == "" {
		return "ja"
	}
	return l
}

// ParseAuthorize validates an authorization request (client, redirect URI,
// PKCE, response type, scopes, prompt). When the error cannot be sent to a
// registered redirect URI, redirectable is false and the caller shows an
// error page instead.
func (p *Provider) ParseAuthorize(ctx context.Context, r *http.Request) (ar fosite.AuthorizeRequester, redirectable bool, err error) {
	// Request objects, by value or by reference, are not supported (OIDC
	// Core 6): take them out before fosite sees them, so the refusal can go
	// back to the client's validated redirect URI.
	if err := r.ParseForm(); err != nil {
		return nil, false, fosite.ErrInvalidRequest.WithHint("Unable to parse the request.").WithWrap(err)
	}
	var unsupported error
	switch {
	case r.Form.Has("request"):
		unsupported = fosite.ErrRequestNotSupported
	case r.Form.Has("request_uri"):
		unsupported = fosite.ErrRequestURINotSupported
	}
	r.Form.Del("request")
	r.Form.Del("request_uri")

	ar, err = p.OAuth2.NewAuthorizeRequest(ctx, r)
	exact := ar != nil && ar.GetClient() != nil && registeredExactly(ar)
	if err != nil {
		return ar, exact && ar.GetRedirectURI() != nil && isRedirectable(err), err
	}
	if !exact {
		return ar, false, fosite.ErrInvalidRequest.WithHint("The redirect_uri is not one the client registered (exact match).")
	}
	if unsupported != nil {
		return ar, true, unsupported
	}
	if err := requirePKCE(ar); err != nil {
		return ar, true, err
	}
	// No scope would get a code, and tokens that name the user (sub, at
	// introspection), without the user's consent to anything: refused, as
	// RFC 6749 3.3 allows. An OpenID Connect request names openid.
	if len(ar.GetRequestedScopes()) == 0 {
		return ar, true, fosite.ErrInvalidScope.WithHint("The scope parameter is required (openid for an OpenID Connect request).")
	}
	if err := checkMaxAge(ar.GetRequestForm()); err != nil {
		return ar, true, err
	}
	if err := checkPrompt(ar.GetRequestForm().Get("prompt")); err != nil {
		return ar, true, err
	}
	return ar, true, nil
}

// maxMaxAge is the largest max_age kept, about a century: fosite and the
// login pages read max_age as a time.Duration of seconds, which a value
// above 292 years would wrap to a negative age, so that every login,
// fresh or not, would be too old.
const maxMaxAge = 100 * 365 * 24 * 60 * 60

// checkMaxAge checks max_age, a number of seconds (OIDC Core 3.1.2.1):
// anything else would be ignored, and the login it asks for not forced.
// Sent without a value, it is as if omitted (RFC 6749 3.1); above
// maxMaxAge, it is maxMaxAge: no session lives that long.
func checkMaxAge(form url.Values) error {
	v, ok := form["max_age"]
	if !ok {
		return nil
	}
	if v[0] == "" {
		form.Del("max_age")
		return nil
	}
	n, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return fosite.ErrInvalidRequest.WithHint("max_age must be a number of seconds.")
	}
	if err != nil || n > maxMaxAge {
		form.Set("max_age", strconv.Itoa(maxMaxAge))
	}
	return nil
}

// promptValues are the prompt values the provider knows (discovery's
// prompt_values_supported).
var promptValues = []string{"none", "login", "consent", "select_account"}

// checkPrompt refuses a prompt parameter (OIDC Core 3.1.2.1) with a value
// the provider does not know, or with none beside any other value. fosite
// checks this only when it issues the code (ValidatePrompt, in
// NewAuthorizeResponse): after the login, account choice or consent pages
// had been shown, which none forbids. The values are split as fosite
// splits them, on spaces.
func checkPrompt(prompt string) error {
	values := fosite.RemoveEmpty(strings.Split(prompt, " "))
	for _, v := range values {
		if !slices.Contains(promptValues, v) {
			// The value is not repeated: the hint goes to the redirect URI.
			return fosite.ErrInvalidRequest.WithHint("The prompt parameter holds an unsupported value; the values supported are none, login, consent and select_account.")
		}
	}
	if len(values) > 1 && slices.Contains(values, "none") {
		return fosite.ErrInvalidRequest.WithHint("The prompt value none cannot be combined with any other value.")
	}
	return nil
}

// registeredExactly reports whether the request's redirect_uri is one the
// client registered, character for character (or absent: fosite then uses
// the client's only one). fosite also takes a loopback address's URI with
// any port (RFC 8252 7.3, for native apps); this provider's clients are
// web applications, and the contract promises an exact match.
func registeredExactly(ar fosite.AuthorizeRequester) bool {
	ru := ar.GetRequestForm().Get("redirect_uri")
	return ru == "" || slices.Contains(ar.GetClient().GetRedirectURIs(), ru)
}

// isRedirectable reports whether fosite validated the redirect URI before
// failing: errors about the client or the redirect URI itself must never
// redirect.
func isRedirectable(err error) bool {
	rfc := fosite.ErrorToRFC6749Error(err)
	switch rfc.ErrorField {
	case fosite.ErrInvalidClient.ErrorField, fosite.ErrUnauthorizedClient.ErrorField:
		return false
	}
	return !strings.Contains(rfc.HintField, "redirect")
}

// requirePKCE refuses authorization requests without an S256 challenge
// (fosite already refuses plain; this makes the rule explicit and early).
func requirePKCE(ar fosite.AuthorizeRequester) error {
	f := ar.GetRequestForm()
	if f.Get("code_challenge") == "" {
		return fosite.ErrInvalidRequest.WithHint("PKCE is required: send code_challenge with code_challenge_method=S256.")
	}
	if m := f.Get("code_challenge_method"); m != "S256" {
		return fosite.ErrInvalidRequest.WithHint("Only the S256 code_challenge_method is supported.")
	}
	// BASE64URL(SHA256(code_verifier)) without padding (RFC 7636 4.2): any
	// other value could never match a verifier at the exchange.
	if cc := f.Get("code_challenge"); len(cc) != 43 || strings.Trim(cc, base64URLAlphabet) != "" {
		return fosite.ErrInvalidRequest.WithHint("The code_challenge must be the 43-character BASE64URL encoding of a SHA-256 hash (S256).")
	}
	return nil
}

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// WriteAuthorizeError sends err to the client's redirect URI.
func (p *Provider) WriteAuthorizeError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	p.OAuth2.WriteAuthorizeError(ctx, w, ar, err)
}

// Authorize issues the authorization code for an authenticated user and
// redirects back to the client. It writes every answer but two, for which
// it returns the error and writes nothing: the database is unreachable
// (Unavailable), or the session or the consent the code was to be issued
// under ended meanwhile (ErrWithdrawn).
func (p *Provider) Authorize(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, u *store.User, id Identity) error {
	for _, s := range ar.GetRequestedScopes() {
		if slices.Contains(SupportedScopes, s) {
			ar.GrantScope(s)
		}
	}
	idClaims, uiClaims := RequestedClaims(ar.GetRequestForm().Get("claims"))
	extra := UserClaims(u, ar.GetGrantedScopes(), idClaims)
	extra["sid"] = id.SID
	sess := NewSession()
	sess.Subject = u.ID
	sess.SID = id.SID
	sess.UserinfoClaims = uiClaims
	sess.Claims = &jwt.IDTokenClaims{
		Subject:                         u.ID,
		Issuer:                          p.cfg.Issuer,
		AuthTime:                        id.AuthTime.UTC(),
		RequestedAt:                     id.RequestedAt.UTC().Truncate(time.Second),
		AuthenticationMethodsReferences: slices.Clone(id.AMR),
		Extra:                           extra,
	}
	resp, err := p.OAuth2.NewAuthorizeResponse(ctx, ar, sess)
	if Unavailable(err) || errors.Is(err, ErrWithdrawn) {
		return err // nothing written: the caller shows its 503 page, or asks again
	}
	if err != nil {
		p.logError(ctx, "authorize response", err)
		p.OAuth2.WriteAuthorizeError(ctx, w, ar, err)
		return nil
	}
	p.OAuth2.WriteAuthorizeResponse(ctx, w, ar, resp)
	return nil
}

// claimScope is the scope that releases each claim UserClaims knows.
var claimScope = map[string]string{"email": "email", "email_verified": "email", "name": "profile", "locale": "profile"}

// ConsentScopes are the scopes a user consents to for an authorization
// request's form: those it asks for, and those whose claims it asks for
// one by one with the "claims" parameter (OIDC Core 5.5), which release the
// same data.
func ConsentScopes(form url.Values) []string {
	scopes := strings.Fields(form.Get("scope"))
	idToken, userinfo := RequestedClaims(form.Get("claims"))
	for _, c := range slices.Concat(idToken, userinfo) {
		if sc, ok := claimScope[c]; ok && !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	return scopes
}

// RequestedClaims returns the claim names a "claims" request parameter asks
// for in the ID token and at userinfo. Malformed JSON asks for nothing.
func RequestedClaims(param string) (idToken, userinfo []string) {
	if param == "" {
		return nil, nil
	}
	var req struct {
		IDToken  map[string]json.RawMessage `json:"id_token"`
		Userinfo map[string]json.RawMessage `json:"userinfo"`
	}
	if json.Unmarshal([]byte(param), &req) != nil {
		return nil, nil
	}
	for k := range req.IDToken {
		idToken = append(idToken, k)
	}
	for k := range req.Userinfo {
		userinfo = append(userinfo, k)
	}
	slices.Sort(idToken)
	slices.Sort(userinfo)
	return idToken, userinfo
}

// VerifyIDTokenHint checks that hint is an ID token this provider issued
// (expired ones are accepted, as OIDC RP-initiated logout allows) and
// returns its subject, audience and sid.
func (p *Provider) VerifyIDTokenHint(ctx context.Context, hint string) (sub string, aud []string, sid string, err error) {
	t, err := signer{keys: p.keys}.Decode(ctx, hint)
	if err != nil && !isOnlyExpired(err) {
		return "", nil, "", err
	}
	if t == nil {
		return "", nil, "", errors.New("id_token_hint: cannot be decoded")
	}
	c := t.Claims
	if iss, _ := c["iss"].(string); iss != p.cfg.Issuer {
		return "", nil, "", errors.New("id_token_hint: issued by another provider")
	}
	sub, _ = c["sub"].(string)
	sid, _ = c["sid"].(string)
	switch a := c["aud"].(type) {
	case string:
		aud = []string{a}
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok {
				aud = append(aud, s)
			}
		}
	}
	return sub, aud, sid, nil
}

func isOnlyExpired(err error) bool {
	var ve *jwt.ValidationError
	return errors.As(err, &ve) && ve.Errors == jwt.ValidationErrorExpired
}

// logError logs a protocol error worth an operator's attention: server
// errors at error level, the rest at debug (they are the client's doing).
func (p *Provider) logError(ctx context.Context, msg string, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	level := slog.LevelDebug
	if rfc.CodeField >= http.StatusInternalServerError {
		level = slog.LevelError
	}
	p.log.Log(ctx, level, msg, "error", rfc.ErrorField, "debug", rfc.DebugField)
}
