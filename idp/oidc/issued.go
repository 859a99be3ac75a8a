package oidc

import (
	"context"
	"sync"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// issuedCodes keeps the records of the codes this process issued lately,
// so that the exchange of one at this process (the usual case: a relying
// party redeems its code moments after the redirect, and one instance
// serves a small deployment) decodes the record it wrote instead of
// reading it back from the store.
//
// Nothing is decided on what it keeps. A code's record changes after it is
// written only by becoming inactive (spent, or its session or consent
// ended) or by being deleted (its client or user deleted), and the
// exchange's spend, a conditional update at Commit, sees either: the
// exchange is then refused (store.ErrConsumed, and what the code issued is
// revoked; store.ErrNotFound) as if its read had found the code so. An
// exchange refused before its spend (a wrong PKCE verifier, say: fosite
// checks those after the read) reads the code then (issuedCodeSpent), so
// that a code spent at another instance and replayed here still revokes
// what it issued, as fosite does when its read finds a code spent. A
// record is taken once: the first exchange of its code removes it, so a
// second exchange here reads the store and finds the code spent, as
// before. Records beyond the last issuedCodesMax are dropped, oldest
// first; an exchange of one of them reads the store.
type issuedCodes struct {
	mu   sync.Mutex
	recs map[string]*store.TokenRecord
	ring [issuedCodesMax]string // signatures in the order they came, for dropping the oldest
	next int
}

// issuedCodesMax bounds the memory kept: a record is about a kilobyte.
// Codes are redeemed within seconds, so this is minutes of logins at
// several a second.
const issuedCodesMax = 1024

// issuedCodeMaxData is the largest stored request kept: a relying party's
// request with a long nonce, code_challenge or claims parameter (an 8 KiB
// nonce is valid) makes a record of tens of kilobytes, and 1024 of those
// would be tens of megabytes an instance keeps for nothing. Such a code is
// read back from the store at its exchange.
const issuedCodeMaxData = 4 << 10

func newIssuedCodes() *issuedCodes {
	return &issuedCodes{recs: make(map[string]*store.TokenRecord)}
}

// put keeps the record of a code just stored.
func (c *issuedCodes) put(rec *store.TokenRecord) {
	if len(rec.Data) > issuedCodeMaxData {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.ring[c.next]; old != "" {
		delete(c.recs, old)
	}
	c.ring[c.next] = rec.Signature
	c.next = (c.next + 1) % issuedCodesMax
	c.recs[rec.Signature] = rec
}

// take returns and forgets the record of the code signature, if it is kept
// and not expired.
func (c *issuedCodes) take(signature string, now time.Time) (*store.TokenRecord, bool) {
	c.mu.Lock()
	rec, ok := c.recs[signature]
	delete(c.recs, signature)
	c.mu.Unlock()
	if !ok || (!rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt)) {
		return nil, false
	}
	return rec, true
}

// HeldCode is the record of a code issued by a request whose writes the
// caller stores itself: a login's last step answers its relying party's
// request before it stores the session, and stores the code with it
// (store.LoginEnd.Code), in one store call instead of two.
type HeldCode struct {
	s   *Storage
	rec *store.TokenRecord
}

type heldCodeKey struct{}

// HoldCode returns a context in which the code an authorization response
// issues is held, not stored: its record is h.Record(), nil until then.
// Once the caller has stored it, h.Stored() tells the storage.
func (s *Storage) HoldCode(ctx context.Context) (_ context.Context, h *HeldCode) {
	h = &HeldCode{s: s}
	return context.WithValue(ctx, heldCodeKey{}, h), h
}

// Record is the held code's record; nil when no code was issued.
func (h *HeldCode) Record() *store.TokenRecord {
	if h == nil {
		return nil
	}
	return h.rec
}

// Stored tells the storage that the caller stored the held code, so that
// its exchange here need not read it (issuedCodes).
func (h *HeldCode) Stored() {
	if h != nil && h.rec != nil {
		h.s.codes.put(h.rec)
	}
}
