package e2e

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/testenv"
)

// TestPasswordLockoutPerIPv6Prefix: failures from addresses of one IPv6 /64
// count against one per-IP limit (a client gets a whole /64, so counting
// per address would never lock it), and another /64 is not locked.
func TestPasswordLockoutPerIPv6Prefix(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) {
			c.TrustedProxies = "127.0.0.1"
			c.LoginIPMaxFailures = 4
		})
		p.createUser(email, password)
		b := p.newBrowser()
		from := func(ip, addr, pw string) *page {
			t.Helper()
			return b.submitWith(b.get(p.URL+"/login"), "password", map[string]string{"email": addr, "password": pw},
				nil, map[string]string{"X-Forwarded-For": ip})
		}
		for i, ip := range []string{"2001:db8::1", "2001:db8::2", "2001:db8::ffff:1", "2001:db8:0:0:8000::9"} {
			pg := from(ip, fmt.Sprintf("spray%d@example.com", i), "guess")
			want := http.StatusOK
			if i == 3 {
				want = http.StatusTooManyRequests
			}
			if pg.Status != want {
				t.Fatalf("failure %d, from %s: status %d, want %d", i+1, ip, pg.Status, want)
			}
		}
		if pg := from("2001:db8::3", email, password); pg.Status != http.StatusTooManyRequests {
			t.Fatalf("right password from another address of the locked /64: %d %s", pg.Status, pg.URL)
		}
		if pg := from("2001:db8:0:1::1", email, password); pg.Status != http.StatusOK || pg.URL.Path != "/account" {
			t.Fatalf("right password from another /64: %d %s", pg.Status, pg.URL)
		}
	})
}
