package web_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// failingReset is a store whose throttles cannot be reset.
type failingReset struct{ store.Store }

func (failingReset) ResetThrottle(context.Context, string) error {
	return errors.New("test: reset refused")
}

// TestSecondStepResetFails: once a login's right code has stored its
// session, the login goes on even when its earlier failed codes cannot be
// forgotten (the session's cookie is already in the answer; an error page
// would leave the browser with a session and nowhere to go).
func TestSecondStepResetFails(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newFuzzEnvOn(t, db)
		secret := e.enableMFAWithSecret(t)
		flow := e.newFlow(t, true)
		e.useStore(failingReset{e.app.Store})
		now := time.Now()
		right, err := totp.GenerateCode(secret, now)
		if err != nil {
			t.Fatal(err)
		}
		valid := map[string]bool{right: true}
		for _, d := range []time.Duration{-30 * time.Second, 30 * time.Second} {
			c, err := totp.GenerateCode(secret, now.Add(d))
			if err != nil {
				t.Fatal(err)
			}
			valid[c] = true
		}
		wrong := "000000"
		for i := 1; valid[wrong]; i++ {
			wrong = strings.Repeat(string(rune('0'+i)), 6)
		}
		post := func(code string) (int, string, bool) {
			rec := e.postAll("/login/totp", url.Values{"csrf": {e.csrf}, "flow": {flow}, "code": {code}}.Encode(), 1)[0]
			return rec.Code, rec.Header().Get("Location"), startsSession(rec)
		}
		if code, _, session := post(wrong); code != http.StatusOK || session {
			t.Fatalf("a wrong code: %d (session %v), want the form again", code, session)
		}
		ts, err := e.app.Store.GetThrottles(context.Background(), "mfa:"+e.user.ID)
		if err != nil || len(ts) != 1 || ts[0].Failures != 1 {
			t.Fatalf("second-step throttle after a wrong code: %+v %v, want one failure", ts, err)
		}
		if code, loc, session := post(right); code != http.StatusSeeOther || loc != "/account" || !session {
			t.Fatalf("the right code with the reset failing: %d %q (session %v), want the login's target", code, loc, session)
		}
	})
}
