package web

import (
	"cmp"
	"context"
	"errors"
	"net/http"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/templates"
)

// --- Apps with access to the account (My Page): the relying parties the
// user allowed on the consent page, and taking that back. First-party
// clients never ask, so they are not listed: their tokens end with the
// session on the list of signed-in devices. ---

func (s *Server) appsPage(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	consents, err := s.Store.ListConsents(r.Context(), u.ID)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	apps := make([]templates.AppEntry, 0, len(consents))
	for _, c := range consents {
		a := templates.AppEntry{ClientID: c.ClientID, Name: cmp.Or(c.ClientName, c.ClientID), Scopes: c.Scopes,
			Granted: shownTime(c.UpdatedAt)}
		if l, ok := s.clientBrand[c.ClientID]; ok {
			a.Brand = l.brand.ProductName
		}
		apps = append(apps, a)
	}
	s.render(w, r, http.StatusOK, templates.Apps(templates.AppsPage{
		Page: s.accountPage(w, r, u), Apps: apps, RevokeAction: "/account/apps/revoke", Notice: noticeOf(r, appNotices),
	}))
}

// appRevoke takes the user's consent to the client back, with the
// client's tokens for the user and an audit event, in one transaction. A
// consent that is gone already (a second click, another tab) just shows
// the list again.
func (s *Server) appRevoke(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requirePostingUser(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	clientID := r.PostFormValue("client")
	c, err := s.Provider.Storage.Client(ctx, clientID)
	if err == nil {
		err = s.changeAccount(r, u, func(tx context.Context) (accountChange, error) {
			return accountChange{Event: "consent.revoked", Detail: map[string]any{"client_id": c.ID, "client": c.Name}},
				s.Store.RevokeConsent(tx, u.ID, c.ID)
		})
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		http.Redirect(w, r, "/account/apps", http.StatusSeeOther)
	case err != nil:
		s.storeFailed(w, r, err)
	default:
		http.Redirect(w, r, "/account/apps?notice="+appNotices[0], http.StatusSeeOther)
	}
}
