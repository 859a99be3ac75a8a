package web

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestIPThrottleKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                        "192.0.2.1",
		"::ffff:192.0.2.1":                 "192.0.2.1", // IPv4-mapped: counted as the IPv4 address
		"2001:db8::1":                      "2001:db8::/64",
		"2001:db8::2":                      "2001:db8::/64",
		"2001:db8::ffff:1":                 "2001:db8::/64",
		"2001:db8:0:0:ffff:ffff:ffff:ffff": "2001:db8::/64",
		"2001:db8:0:1::1":                  "2001:db8:0:1::/64", // the next /64
		"2001:db8:1:2:3:4:5:6":             "2001:db8:1:2::/64",
		"fe80::1%eth0":                     "fe80::/64",
		"::1":                              "::/64",
		"not-an-ip":                        "not-an-ip",
		"":                                 "",
	} {
		if got := ipThrottleKey(in); got != want {
			t.Errorf("ipThrottleKey(%q) = %q, want %q", in, got, want)
		}
	}
	// The key the password step counts: the client's /64.
	s := &Server{Deps: Deps{Key: testKey(t)}}
	keyFrom := func(remote string) string {
		r := httptest.NewRequest(http.MethodPost, "/login", nil)
		r.RemoteAddr = remote
		return s.passwordThrottleKeys(r, "user@example.com")[1]
	}
	if a, b := keyFrom("[2001:db8::1]:5555"), keyFrom("[2001:db8::2]:6666"); a != b || a != "pwd:ip:2001:db8::/64" {
		t.Errorf("per-IP keys of 2001:db8::1 and 2001:db8::2: %q and %q, want both pwd:ip:2001:db8::/64", a, b)
	}
	if a, b := keyFrom("192.0.2.1:5555"), keyFrom("192.0.2.2:5555"); a == b || a != "pwd:ip:192.0.2.1" {
		t.Errorf("per-IP keys of 192.0.2.1 and 192.0.2.2: %q and %q, want one per address", a, b)
	}
}
