package web

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/templates"
)

// TestBrandCSS: /static/brand.css carries the configured colour as the
// --brand custom property, with an ETag that answers 304 when it matches and
// changes with the colour; a value that is not #rrggbb never reaches the
// sheet.
func TestBrandCSS(t *testing.T) {
	key := testKey(t)
	get := func(color, etag string) *httptest.ResponseRecorder {
		cfg := config.Defaults()
		cfg.BrandColor = color
		s := New(Deps{Config: cfg, Key: key, Logger: slog.New(slog.DiscardHandler)})
		req := httptest.NewRequest(http.MethodGet, "/static/brand.css", nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	green := get("#1F6F43", "")
	if green.Code != http.StatusOK || green.Body.String() != ":root{--brand:#1f6f43}\n" ||
		!strings.HasPrefix(green.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("brand.css: %d %q %v", green.Code, green.Body, green.Header())
	}
	etag := green.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if again := get("#1f6f43", etag); again.Code != http.StatusNotModified || again.Body.Len() != 0 {
		t.Fatalf("matching If-None-Match: %d %q, want 304", again.Code, again.Body)
	}
	blue := get("#0b5cad", etag)
	if blue.Code != http.StatusOK || blue.Header().Get("ETag") == etag || !strings.Contains(blue.Body.String(), "#0b5cad") {
		t.Fatalf("another colour with the old ETag: %d %q %q", blue.Code, blue.Header().Get("ETag"), blue.Body)
	}
	// Validate refuses these; should one reach the server anyway, the
	// default colour is served instead.
	for _, bad := range []string{"red;}body{display:none", "#0b5cad}*{x:y", "expression(alert(1))"} {
		if rec := get(bad, ""); rec.Body.String() != ":root{--brand:#0b5cad}\n" {
			t.Errorf("%q: served %q", bad, rec.Body)
		}
	}
}

// TestFamilyBrand: a flow of a relying party in a brand of IDP_BRANDS_FILE
// shows that brand (name, logo falling back to the provider's, colour and
// its own style sheet); other flows and pages outside a flow show the
// provider's; /static/brand.css?b= serves each brand's colour, an unknown
// one the provider's.
func TestFamilyBrand(t *testing.T) {
	key := testKey(t)
	cfg := config.Defaults()
	cfg.BrandName, cfg.BrandLogoURL = "カメラID", "/static/logo.svg"
	cfg.Brands = []config.Brand{{ID: "giga", Name: "ギガらくカメラ", Color: "#1F6F43", Clients: []string{"viewer", "viewer-admin"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := New(Deps{Config: cfg, Key: key, Logger: slog.New(slog.DiscardHandler)})
	brandOf := func(f *flow) templates.Brand {
		return s.page(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/login", nil), f).Brand
	}
	giga := templates.Brand{ID: "giga", ProductName: "ギガらくカメラ", LogoURL: "/static/logo.svg", PrimaryColor: "#1F6F43"}
	own := templates.Brand{ProductName: "カメラID", LogoURL: "/static/logo.svg", PrimaryColor: "#0b5cad"}
	for _, c := range []struct {
		f    *flow
		want templates.Brand
	}{
		{&flow{ClientID: "viewer-admin"}, giga},
		{&flow{ClientID: "door-cam"}, own},
		{&flow{}, own},
		{nil, own},
	} {
		if got := brandOf(c.f); got != c.want {
			t.Errorf("flow %+v: brand %+v, want %+v", c.f, got, c.want)
		}
	}

	var page bytes.Buffer
	p := s.page(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/login", nil), &flow{ClientID: "viewer"})
	if err := templates.Login(templates.LoginPage{Page: p, Action: "/login", Flow: "f"}).Render(t.Context(), &page); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{`href="/static/brand.css?b=giga"`, "ギガらくカメラ"} {
		if !strings.Contains(page.String(), m) {
			t.Errorf("the login page lacks %s", m)
		}
	}

	sheet := func(target string) (string, string) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		return rec.Body.String(), rec.Header().Get("ETag")
	}
	gigaCSS, gigaTag := sheet("/static/brand.css?b=giga")
	ownCSS, ownTag := sheet("/static/brand.css")
	unknownCSS, _ := sheet("/static/brand.css?b=nope")
	if gigaCSS != ":root{--brand:#1f6f43}\n" || ownCSS != ":root{--brand:#0b5cad}\n" || unknownCSS != ownCSS || gigaTag == ownTag {
		t.Errorf("sheets: giga %q %s, own %q %s, unknown %q", gigaCSS, gigaTag, ownCSS, ownTag, unknownCSS)
	}
}
