package app

import "testing"

// TestValidateRedirectURI: what a client may register as a redirect URI
// (exact match at the authorization endpoint, so no wildcards).
func TestValidateRedirectURI(t *testing.T) {
	for _, ok := range []string{
		"https://viewer.example/cb", "https://viewer.example:8443/cb?x=1", "http://localhost:9090/callback",
		"http://127.0.0.1/cb", "http://[::1]:8000/cb", "HTTP://LOCALHOST/cb", "com.example.app:/oauth2redirect",
		"com.example.app:callback", "com.example.app://cb", "com.example.app://callback/path",
	} {
		if err := ValidateRedirectURI(ok); err != nil {
			t.Errorf("ValidateRedirectURI(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{
		"", "/cb", "viewer.example/cb", "https://viewer.example/cb#frag", "https://viewer.example/cb#",
		"http://evil.example/cb", "https:///cb", "javascript:alert(1)", "data:text/html,x", "myapp:/cb",
		"https://user:pw@viewer.example/cb", "https://user@viewer.example/cb", "https://viewer.example/c b",
		"https://viewer.example/cb\t", "https://viewer.example/cb\n", "https://*.example.com/cb", "com.example.app:",
		"https://viewer.example/cb\xff",
	} {
		if err := ValidateRedirectURI(bad); err == nil {
			t.Errorf("ValidateRedirectURI(%q) accepted", bad)
		}
	}
}
