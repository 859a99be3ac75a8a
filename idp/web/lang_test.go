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

// TestLanguageChoice: the language switch (?lang=, remembered in a cookie)
// beats the flow's language, which beats ui_locales, which beats
// Accept-Language; Japanese otherwise. The switch links keep the page's
// query; on a login step answering its form they lead to the step's page.
func TestLanguageChoice(t *testing.T) {
	key := testKey(t)
	s := New(Deps{Config: config.Defaults(), Key: key, Logger: slog.New(slog.DiscardHandler)})
	req := func(method, target, cookie, acceptLang string) *http.Request {
		r := httptest.NewRequest(method, target, nil)
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: s.cookieName(langCookie), Value: cookie})
		}
		if acceptLang != "" {
			r.Header.Set("Accept-Language", acceptLang)
		}
		return r
	}
	enFlow := &flow{Lang: "en"}
	for _, c := range []struct {
		name, target, cookie, acceptLang string
		f                                *flow
		want                             string
	}{
		{"nothing", "/login", "", "", nil, "ja"},
		{"browser", "/login", "", "en-US,en;q=0.9", nil, "en"},
		{"ui_locales beats the browser", "/login?ui_locales=ja", "", "en", nil, "ja"},
		{"the flow beats ui_locales", "/login?ui_locales=ja", "", "", enFlow, "en"},
		{"the cookie beats the flow", "/login", "ja", "", enFlow, "ja"},
		{"the switch beats the cookie", "/login?lang=en", "ja", "", nil, "en"},
		{"an unknown choice is ignored", "/login?lang=fr", "de", "en", nil, "en"},
	} {
		if got := s.lang(req(http.MethodGet, c.target, c.cookie, c.acceptLang), c.f); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}

	// The switch remembers the choice and links this page in each language.
	w := httptest.NewRecorder()
	p := s.page(w, req(http.MethodGet, "/login?flow=abc&lang=en", "", ""), nil)
	var remembered string
	for _, ck := range w.Result().Cookies() {
		if ck.Name == s.cookieName(langCookie) {
			remembered = ck.Value
		}
	}
	if remembered != "en" {
		t.Errorf("the choice is not remembered (cookie %q)", remembered)
	}
	want := []templates.LangLink{
		{Lang: "ja", Label: "日本語", Href: "?flow=abc&lang=ja"},
		{Lang: "en", Label: "English", Href: "?flow=abc&lang=en", Current: true},
	}
	if len(p.LangLinks) != len(want) || p.LangLinks[0] != want[0] || p.LangLinks[1] != want[1] {
		t.Errorf("switch links %+v, want %+v", p.LangLinks, want)
	}
	var page bytes.Buffer
	if err := templates.Error(templates.ErrorPage{Page: p, Status: 404, Message: "not_found"}).Render(t.Context(), &page); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{`<html lang="en">`, `<nav class="lang-switch" aria-label="Language">`,
		`<a href="?flow=abc&amp;lang=ja" lang="ja" hreflang="ja">日本語</a>`, `<span lang="en" aria-current="true">English</span>`} {
		if !strings.Contains(page.String(), m) {
			t.Errorf("the page lacks %s", m)
		}
	}
	// A login step answering its form links to the step's page of the flow;
	// other pages answering a form have no switch.
	p = s.page(httptest.NewRecorder(), req(http.MethodPost, "/login/totp", "", ""), &flow{id: "f1", Lang: "ja"})
	if len(p.LangLinks) != 2 || p.LangLinks[1].Href != "/login/totp?flow=f1&lang=en" || !p.LangLinks[0].Current {
		t.Errorf("switch after a wrong code: %+v", p.LangLinks)
	}
	// The code form answering the password form links to its own page.
	p = s.pageAt(httptest.NewRecorder(), req(http.MethodPost, "/login", "", ""), &flow{id: "f3", Lang: "en"}, "/login/totp")
	if len(p.LangLinks) != 2 || p.LangLinks[0].Href != "/login/totp?flow=f3&lang=ja" || !p.LangLinks[1].Current {
		t.Errorf("switch of the code form after the password: %+v", p.LangLinks)
	}
	if p := s.page(httptest.NewRecorder(), req(http.MethodPost, "/account/password", "", ""), &flow{id: "f2"}); len(p.LangLinks) != 0 {
		t.Errorf("a settings page answering a form has a switch: %+v", p.LangLinks)
	}
	if p := s.page(httptest.NewRecorder(), req(http.MethodPost, "/login", "", ""), nil); len(p.LangLinks) != 0 {
		t.Errorf("a page answering a form without a flow has a switch: %+v", p.LangLinks)
	}
}
