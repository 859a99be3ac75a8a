package web

import (
	"net/http/httptest"
	"testing"

	"github.com/kamera-id/idp/idp/config"
)

// TestClientIPBehindProxies: X-Forwarded-For is believed only from a
// trusted proxy, and only as far as the first address that is not one, so
// a client cannot pick the IP its failures count against.
func TestClientIPBehindProxies(t *testing.T) {
	cfg := config.Defaults()
	cfg.TrustedProxies = "10.0.0.0/8, 192.0.2.7"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := &Server{Deps: Deps{Config: cfg}}
	s.trusted, _ = cfg.TrustedProxyPrefixes()
	none := &Server{Deps: Deps{Config: config.Defaults()}}
	for _, tc := range []struct {
		srv    *Server
		remote string
		xff    []string
		want   string
	}{
		{none, "10.1.2.3:5555", []string{"198.51.100.9"}, "10.1.2.3"},           // no trusted proxies: header ignored
		{s, "203.0.113.5:5555", []string{"198.51.100.9"}, "203.0.113.5"},        // not from a proxy: header ignored
		{s, "10.1.2.3:5555", []string{"198.51.100.9"}, "198.51.100.9"},          // from the balancer
		{s, "10.1.2.3:5555", []string{"6.6.6.6, 198.51.100.9"}, "198.51.100.9"}, // a forged left part is skipped
		{s, "10.1.2.3:5555", []string{"198.51.100.9, 192.0.2.7"}, "198.51.100.9"},
		{s, "10.1.2.3:5555", []string{"6.6.6.6", "198.51.100.9, 10.9.9.9"}, "198.51.100.9"}, // several headers
		{s, "10.1.2.3:5555", []string{"not-an-ip"}, "10.1.2.3"},
		{s, "10.1.2.3:5555", nil, "10.1.2.3"},
		{s, "10.1.2.3:5555", []string{"2001:db8::1"}, "2001:db8::1"},
		// Balancers that write ports, or brackets.
		{s, "10.1.2.3:5555", []string{"198.51.100.9:61234"}, "198.51.100.9"},
		{s, "10.1.2.3:5555", []string{"[2001:db8::1]:61234"}, "2001:db8::1"},
		{s, "10.1.2.3:5555", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{s, "10.1.2.3:5555", []string{"198.51.100.9:61234, 10.9.9.9:443"}, "198.51.100.9"},
	} {
		r := httptest.NewRequest("GET", "/login", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := tc.srv.clientIP(r); got != tc.want {
			t.Errorf("remote %s, X-Forwarded-For %q: client %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}
