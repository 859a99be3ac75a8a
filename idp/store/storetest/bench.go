package storetest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/mfa"
	"github.com/kamera-id/idp/idp/store"
)

// RunBenchmarks measures the store's hot paths, as the provider uses them,
// on the store open returns (a fresh one for each benchmark).
func RunBenchmarks(b *testing.B, open func(b *testing.B) store.Store) {
	b.Run("SessionLookup", func(b *testing.B) { benchSessionLookup(b, open(b)) })
	b.Run("BackupCodeCheck", func(b *testing.B) { benchBackupCodeCheck(b, open(b)) })
	b.Run("TokenCreateGet", func(b *testing.B) { benchTokens(b, open(b)) })
	b.Run("Login", func(b *testing.B) { benchLogin(b, open(b)) })
}

func benchUser(b *testing.B, s store.Store, id string) *store.User {
	b.Helper()
	u := &store.User{ID: id, Email: id + "@example.com", Name: id, PasswordHash: "hash-" + id, CreatedAt: t0, UpdatedAt: t0}
	if err := s.CreateUser(b.Context(), u); err != nil {
		b.Fatal(err)
	}
	return u
}

// benchSessionLookup is what every request with an SSO cookie does: hash
// the cookie and read the unexpired session.
func benchSessionLookup(b *testing.B, s store.Store) {
	u := benchUser(b, s, "bench-session")
	token := crypt.RandomToken(32)
	now := time.Now().Truncate(time.Second)
	sess := &store.Session{
		TokenHash: crypt.HashToken(token), ID: crypt.RandomToken(16), UserID: u.ID, AuthTime: now,
		AMR: []string{"pwd", "otp"}, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour),
	}
	if err := s.CreateSession(b.Context(), sess); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, err := s.GetSession(b.Context(), crypt.HashToken(token), now)
		if err != nil || got.UserID != u.ID {
			b.Fatalf("get session: %v", err)
		}
	}
}

// benchBackupCodeCheck is the backup code step: normalise what was typed,
// its keyed hash, and the one statement that uses the code up. Every ten
// codes the set is replaced, with the timer stopped.
func benchBackupCodeCheck(b *testing.B, s store.Store) {
	u := benchUser(b, s, "bench-backup")
	enroll(b, s, u.ID)
	key, err := crypt.ParseKey(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		b.Fatal(err)
	}
	var typed []string
	refill := func() {
		codes, err := mfa.GenerateBackupCodes(mfa.BackupCodeCount)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.ReplaceBackupCodes(b.Context(), u.ID, mfa.SealBackupCodes(key, u.ID, codes)); err != nil {
			b.Fatal(err)
		}
		typed = typed[:0]
		for _, c := range codes {
			typed = append(typed, mfa.FormatBackupCode(c))
		}
	}
	now := time.Now()
	i := 0
	for b.Loop() {
		if i%mfa.BackupCodeCount == 0 {
			b.StopTimer()
			refill()
			b.StartTimer()
		}
		canonical, ok := mfa.NormalizeBackupCode(typed[i%mfa.BackupCodeCount])
		if !ok {
			b.Fatal("normalize")
		}
		if _, err := s.UseBackupCode(b.Context(), u.ID, mfa.BackupCodeHash(key, u.ID, canonical), now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// benchTokens is the token table's hot path: a record written at
// authorization (a code, in the user's session) and read back at the token
// endpoint.
func benchTokens(b *testing.B, s store.Store) {
	u := benchUser(b, s, "bench-tokens")
	data := bytes.Repeat([]byte("x"), 900) // about a stored request's size
	now := time.Now().Truncate(time.Second)
	sess := &store.Session{TokenHash: crypt.HashToken(crypt.RandomToken(32)), ID: crypt.RandomToken(16), UserID: u.ID,
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateSession(b.Context(), sess); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		sig := crypt.RandomToken(32)
		if err := s.CreateToken(b.Context(), &store.TokenRecord{
			Kind: store.KindAuthorizeCode, Signature: sig, RequestID: sig, ClientID: "c", Subject: u.ID, SessionID: sess.ID,
			Data: data, Active: true, CreatedAt: now, ExpiresAt: now.Add(time.Minute),
		}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.GetToken(b.Context(), store.KindAuthorizeCode, sig); err != nil {
			b.Fatal(err)
		}
	}
}

// benchLogin is every store call of one login with a TOTP code, in the
// provider's order (the load tool counts 5 or 6; the login's state travels
// sealed in its requests): the password step's read, the second step's
// read, the session (the login and its TOTP code spent with it, the code
// stored with it), at the token endpoint the code's exchange for tokens
// (the code's read is skipped at the process that issued it) and the
// check of the current signing key before the ID token is signed (skipped
// there while another request checks), and userinfo's read. Data sizes
// are about the provider's.
func benchLogin(b *testing.B, s store.Store) {
	ctx := b.Context()
	u := benchUser(b, s, "bench-login")
	now := time.Now().Truncate(time.Second)
	must := func(what string, err error) {
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
	}
	secretEnc := bytes.Repeat([]byte{1}, 48)
	must("pending TOTP", s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: u.ID, SecretEnc: secretEnc, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	must("confirm TOTP", s.ConfirmTOTP(ctx, u.ID, secretEnc, 1, nil, now))
	if _, err := s.CurrentSigningKeyID(ctx); errors.Is(err, store.ErrNotFound) {
		must("signing key", s.AddSigningKey(ctx, &store.SigningKey{ID: "bench-key", Algorithm: "RS256",
			PrivateEnc: bytes.Repeat([]byte{2}, 1250), PublicJWK: bytes.Repeat([]byte{3}, 400), CreatedAt: now}, now, false))
	}
	reqData := bytes.Repeat([]byte("r"), 1200)
	step := int64(1)
	for b.Loop() {
		_, _, err := s.GetPasswordStep(ctx, u.Email, "pw:"+u.Email, "ip:127.0.0.1")
		must("password step", err)
		login := crypt.HashToken(crypt.RandomToken(24))
		second, err := s.GetSecondStep(ctx, u.ID, "mfa:"+u.ID, login)
		must("second step", err)
		step++
		sid := crypt.RandomToken(16)
		code, requestID := crypt.RandomToken(32), crypt.RandomToken(16)
		record := func(kind, sig string, active bool) *store.TokenRecord {
			return &store.TokenRecord{Kind: kind, Signature: sig, RequestID: requestID, ClientID: "c", Subject: u.ID,
				SessionID: sid, Data: reqData, Active: active, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		}
		end := store.LoginEnd{Key: login, SpentUntil: now.Add(time.Hour), Stamp: second.User.SecurityStamp, TOTPStep: step,
			Code: record(store.KindAuthorizeCode, code, true)}
		must("start session", s.StartSession(ctx, end, &store.Session{
			TokenHash: crypt.HashToken(crypt.RandomToken(32)), ID: sid, UserID: u.ID,
			AuthTime: now, AMR: []string{"pwd", "otp"}, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour),
		}))
		access := crypt.RandomToken(32)
		must("exchange", s.ExchangeTokens(ctx, &store.TokenExchange{
			SpendKind: store.KindAuthorizeCode, SpendSignature: code,
			Create: []*store.TokenRecord{record(store.KindAccessToken, access, true), record(store.KindRefreshToken, crypt.RandomToken(32), true)},
		}))
		_, err = s.CurrentSigningKeyID(ctx)
		must("signing key check", err)
		_, _, err = s.GetTokenWithUser(ctx, store.KindAccessToken, access)
		must("userinfo", err)
	}
}
