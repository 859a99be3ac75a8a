package oidc

import "testing"

// TestWebOrigin: a redirect URI's origin as a browser writes it in Origin.
func TestWebOrigin(t *testing.T) {
	for raw, want := range map[string]string{
		"https://App.Example/cb":            "https://app.example",
		"https://app.example:443/cb":        "https://app.example",
		"https://app.example:0443/cb":       "https://app.example",
		"https://app.example:/cb":           "https://app.example",
		"http://localhost:80/cb":            "http://localhost",
		"http://127.0.0.1:8080/cb":          "http://127.0.0.1:8080",
		"https://[2001:DB8:0:0::1]:8443/cb": "https://[2001:db8::1]:8443",
		"http://[::1]/cb":                   "http://[::1]",
		"https://bücher.example/cb":         "", // a browser sends the punycode: not compared
		"com.example.app:/cb":               "",
		"https://app.example:99999/cb":      "",
	} {
		if got := webOrigin(raw); got != want {
			t.Errorf("webOrigin(%q) = %q, want %q", raw, got, want)
		}
	}
}
