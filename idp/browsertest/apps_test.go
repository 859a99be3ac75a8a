package browsertest

import (
	"context"
	"testing"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/oidc"
)

// TestAppsWithAccess: My Page's list of the apps the customer allowed
// (アクセスを許可したアプリ), at each viewport: an app of a family shows
// its brand, a long name and every scope fit a phone, and taking one app's
// access back leaves the other listed.
func TestAppsWithAccess(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		ctx := context.Background()
		st := s.st.app.Store
		u, err := st.GetUserByEmail(ctx, s.st.Email)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			client app.NewClient
			scopes []string
		}{
			{app.NewClient{ID: "door-cam", Name: "Door Cam Viewer"}, []string{"openid", "profile"}},
			{app.NewClient{ID: "partner", Name: "見守りカメラ連携サービス（パートナー株式会社の録画バックアップアプリケーション）"},
				oidc.SupportedScopes},
		} {
			c.client.RedirectURIs = []string{"http://localhost:1/callback"}
			if _, _, err := s.st.app.CreateClient(ctx, c.client); err != nil {
				t.Fatal(err)
			}
			if err := st.PutConsent(ctx, u.ID, c.client.ID, c.scopes, s.st.clock.Now()); err != nil {
				t.Fatal(err)
			}
		}
		s.open(s.st.IDP+"/account", "#email")
		s.fill("#email", s.st.Email)
		s.fill("#password", s.st.Password)
		s.submit(".account-email")
		s.click(`a[href="/account/apps"]`, ".app")
		if n := s.count(".app"); n != 2 {
			t.Fatalf("%d apps listed, want 2", n)
		}
		if got := s.text(`.app[data-client="door-cam"] .app-brand`); got != "ドアカメラ" {
			t.Errorf("the door family's app shows brand %q, want ドアカメラ", got)
		}
		s.page("apps", "ja")
		s.click(`.app[data-client="door-cam"] button[type="submit"]`, `[role="status"]`)
		if n := s.count(".app"); n != 1 || s.count(`.app[data-client="partner"]`) != 1 {
			t.Errorf("after taking the door app's access back: %d apps listed, want the partner's alone", n)
		}
		s.page("apps-revoked", "ja")
	})
}
