package web

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/crypt"
)

// TestBrandCSS: /static/brand.css carries the configured colour as the
// --brand custom property, with an ETag that answers 304 when it matches and
// changes with the colour; a value that is not #rrggbb never reaches the
// sheet.
func TestBrandCSS(t *testing.T) {
	key, err := crypt.NewKey(bytes.Repeat([]byte{7}, crypt.KeySize))
	if err != nil {
		t.Fatal(err)
	}
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
