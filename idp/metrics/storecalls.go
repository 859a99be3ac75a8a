// Timing wrappers for the methods of store.Store, one per method, written
// from the interface (a method added to the interface and missing here is
// still served, by the embedded store, only not timed).

package metrics

import (
	"context"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

func (m *Store) Ping(ctx context.Context) error {
	start := time.Now()
	err := m.Store.Ping(ctx)
	m.done("Ping", start, err)
	return err
}

func (m *Store) BeginTx(ctx context.Context) (context.Context, error) {
	start := time.Now()
	r0, err := m.Store.BeginTx(ctx)
	m.done("BeginTx", start, err)
	return r0, err
}

func (m *Store) Commit(ctx context.Context) error {
	start := time.Now()
	err := m.Store.Commit(ctx)
	m.done("Commit", start, err)
	return err
}

func (m *Store) Rollback(ctx context.Context) error {
	start := time.Now()
	err := m.Store.Rollback(ctx)
	m.done("Rollback", start, err)
	return err
}

func (m *Store) CreateUser(ctx context.Context, u *store.User) error {
	start := time.Now()
	err := m.Store.CreateUser(ctx, u)
	m.done("CreateUser", start, err)
	return err
}

func (m *Store) GetUser(ctx context.Context, id string) (*store.User, error) {
	start := time.Now()
	r0, err := m.Store.GetUser(ctx, id)
	m.done("GetUser", start, err)
	return r0, err
}

func (m *Store) MarkEmailVerified(ctx context.Context, userID string, now time.Time) error {
	start := time.Now()
	err := m.Store.MarkEmailVerified(ctx, userID, now)
	m.done("MarkEmailVerified", start, err)
	return err
}

func (m *Store) GetUserByEmail(ctx context.Context, email string) (*store.User, error) {
	start := time.Now()
	r0, err := m.Store.GetUserByEmail(ctx, email)
	m.done("GetUserByEmail", start, err)
	return r0, err
}

func (m *Store) UpdatePassword(ctx context.Context, userID, passwordHash string, now time.Time) error {
	start := time.Now()
	err := m.Store.UpdatePassword(ctx, userID, passwordHash, now)
	m.done("UpdatePassword", start, err)
	return err
}

func (m *Store) UpgradePasswordHash(ctx context.Context, userID, oldHash, newHash string) error {
	start := time.Now()
	err := m.Store.UpgradePasswordHash(ctx, userID, oldHash, newHash)
	m.done("UpgradePasswordHash", start, err)
	return err
}

func (m *Store) DeleteUser(ctx context.Context, userID string) error {
	start := time.Now()
	err := m.Store.DeleteUser(ctx, userID)
	m.done("DeleteUser", start, err)
	return err
}

func (m *Store) SetUserDisabled(ctx context.Context, userID string, at time.Time) (bool, error) {
	start := time.Now()
	r0, err := m.Store.SetUserDisabled(ctx, userID, at)
	m.done("SetUserDisabled", start, err)
	return r0, err
}

func (m *Store) CreateClient(ctx context.Context, c *store.Client) error {
	start := time.Now()
	err := m.Store.CreateClient(ctx, c)
	m.done("CreateClient", start, err)
	return err
}

func (m *Store) GetClient(ctx context.Context, id string) (*store.Client, error) {
	start := time.Now()
	r0, err := m.Store.GetClient(ctx, id)
	m.done("GetClient", start, err)
	return r0, err
}

func (m *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	start := time.Now()
	r0, err := m.Store.ListClients(ctx)
	m.done("ListClients", start, err)
	return r0, err
}

func (m *Store) UpdateClient(ctx context.Context, c *store.Client) error {
	start := time.Now()
	err := m.Store.UpdateClient(ctx, c)
	m.done("UpdateClient", start, err)
	return err
}

func (m *Store) SetClientSecret(ctx context.Context, id string, secretHash []byte, keepOldUntil time.Time) error {
	start := time.Now()
	err := m.Store.SetClientSecret(ctx, id, secretHash, keepOldUntil)
	m.done("SetClientSecret", start, err)
	return err
}

func (m *Store) DeleteClient(ctx context.Context, id string) error {
	start := time.Now()
	err := m.Store.DeleteClient(ctx, id)
	m.done("DeleteClient", start, err)
	return err
}

func (m *Store) MasterKeyCheck(ctx context.Context) ([]byte, error) {
	start := time.Now()
	r0, err := m.Store.MasterKeyCheck(ctx)
	m.done("MasterKeyCheck", start, err)
	return r0, err
}

func (m *Store) RecordMasterKeyCheck(ctx context.Context, check []byte, now time.Time) ([]byte, error) {
	start := time.Now()
	r0, err := m.Store.RecordMasterKeyCheck(ctx, check, now)
	m.done("RecordMasterKeyCheck", start, err)
	return r0, err
}

func (m *Store) CurrentSigningKeyID(ctx context.Context) (string, error) {
	start := time.Now()
	r0, err := m.Store.CurrentSigningKeyID(ctx)
	m.done("CurrentSigningKeyID", start, err)
	return r0, err
}

func (m *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	start := time.Now()
	r0, err := m.Store.ListSigningKeys(ctx)
	m.done("ListSigningKeys", start, err)
	return r0, err
}

func (m *Store) AddSigningKey(ctx context.Context, k *store.SigningKey, now time.Time, sameAlgorithm bool) error {
	start := time.Now()
	err := m.Store.AddSigningKey(ctx, k, now, sameAlgorithm)
	m.done("AddSigningKey", start, err)
	return err
}

func (m *Store) DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) (int, error) {
	start := time.Now()
	r0, err := m.Store.DeleteSigningKeysRetiredBefore(ctx, t)
	m.done("DeleteSigningKeysRetiredBefore", start, err)
	return r0, err
}

func (m *Store) CreateSession(ctx context.Context, s *store.Session) error {
	start := time.Now()
	err := m.Store.CreateSession(ctx, s)
	m.done("CreateSession", start, err)
	return err
}

func (m *Store) StartSession(ctx context.Context, end store.LoginEnd, s *store.Session) error {
	start := time.Now()
	err := m.Store.StartSession(ctx, end, s)
	m.done("StartSession", start, err)
	return err
}

func (m *Store) LoginSession(ctx context.Context, loginKey []byte) (string, error) {
	start := time.Now()
	r0, err := m.Store.LoginSession(ctx, loginKey)
	m.done("LoginSession", start, err)
	return r0, err
}

func (m *Store) GetSession(ctx context.Context, tokenHash []byte, now time.Time) (*store.Session, error) {
	start := time.Now()
	r0, err := m.Store.GetSession(ctx, tokenHash, now)
	m.done("GetSession", start, err)
	return r0, err
}

func (m *Store) TouchSession(ctx context.Context, tokenHash []byte, lastSeen, expiresAt time.Time) error {
	start := time.Now()
	err := m.Store.TouchSession(ctx, tokenHash, lastSeen, expiresAt)
	m.done("TouchSession", start, err)
	return err
}

func (m *Store) DeleteSession(ctx context.Context, tokenHash []byte) error {
	start := time.Now()
	err := m.Store.DeleteSession(ctx, tokenHash)
	m.done("DeleteSession", start, err)
	return err
}

func (m *Store) RotateSession(ctx context.Context, oldHash, newHash []byte, userID string) (*store.Session, error) {
	start := time.Now()
	r0, err := m.Store.RotateSession(ctx, oldHash, newHash, userID)
	m.done("RotateSession", start, err)
	return r0, err
}

func (m *Store) EndSession(ctx context.Context, tokenHash []byte) error {
	start := time.Now()
	err := m.Store.EndSession(ctx, tokenHash)
	m.done("EndSession", start, err)
	return err
}

func (m *Store) DeleteUserSessions(ctx context.Context, userID, exceptID string) (int, error) {
	start := time.Now()
	r0, err := m.Store.DeleteUserSessions(ctx, userID, exceptID)
	m.done("DeleteUserSessions", start, err)
	return r0, err
}

func (m *Store) ListUserSessions(ctx context.Context, userID string, now time.Time) ([]store.Session, error) {
	start := time.Now()
	r0, err := m.Store.ListUserSessions(ctx, userID, now)
	m.done("ListUserSessions", start, err)
	return r0, err
}

func (m *Store) PutFlow(ctx context.Context, f *store.Flow) error {
	start := time.Now()
	err := m.Store.PutFlow(ctx, f)
	m.done("PutFlow", start, err)
	return err
}

func (m *Store) GetFlow(ctx context.Context, key []byte, now time.Time) (*store.Flow, error) {
	start := time.Now()
	r0, err := m.Store.GetFlow(ctx, key, now)
	m.done("GetFlow", start, err)
	return r0, err
}

func (m *Store) DeleteFlow(ctx context.Context, key []byte) error {
	start := time.Now()
	err := m.Store.DeleteFlow(ctx, key)
	m.done("DeleteFlow", start, err)
	return err
}

func (m *Store) GetConsent(ctx context.Context, userID, clientID string) ([]string, error) {
	start := time.Now()
	r0, err := m.Store.GetConsent(ctx, userID, clientID)
	m.done("GetConsent", start, err)
	return r0, err
}

func (m *Store) PutConsent(ctx context.Context, userID, clientID string, scopes []string, now time.Time) error {
	start := time.Now()
	err := m.Store.PutConsent(ctx, userID, clientID, scopes, now)
	m.done("PutConsent", start, err)
	return err
}

func (m *Store) AddConsent(ctx context.Context, userID, clientID string, scopes []string, now time.Time) ([]string, error) {
	start := time.Now()
	r0, err := m.Store.AddConsent(ctx, userID, clientID, scopes, now)
	m.done("AddConsent", start, err)
	return r0, err
}

func (m *Store) ListConsents(ctx context.Context, userID string) ([]store.Consent, error) {
	start := time.Now()
	r0, err := m.Store.ListConsents(ctx, userID)
	m.done("ListConsents", start, err)
	return r0, err
}

func (m *Store) RevokeConsent(ctx context.Context, userID, clientID string) error {
	start := time.Now()
	err := m.Store.RevokeConsent(ctx, userID, clientID)
	m.done("RevokeConsent", start, err)
	return err
}

func (m *Store) PutPendingTOTP(ctx context.Context, p *store.PendingTOTP) error {
	start := time.Now()
	err := m.Store.PutPendingTOTP(ctx, p)
	m.done("PutPendingTOTP", start, err)
	return err
}

func (m *Store) GetPendingTOTP(ctx context.Context, userID string, now time.Time) (*store.PendingTOTP, error) {
	start := time.Now()
	r0, err := m.Store.GetPendingTOTP(ctx, userID, now)
	m.done("GetPendingTOTP", start, err)
	return r0, err
}

func (m *Store) ConfirmTOTP(ctx context.Context, userID string, secretEnc []byte, step int64, codes []store.BackupCode, now time.Time) error {
	start := time.Now()
	err := m.Store.ConfirmTOTP(ctx, userID, secretEnc, step, codes, now)
	m.done("ConfirmTOTP", start, err)
	return err
}

func (m *Store) GetSecondStep(ctx context.Context, userID, throttleKey string, loginKey []byte) (*store.SecondStep, error) {
	start := time.Now()
	r0, err := m.Store.GetSecondStep(ctx, userID, throttleKey, loginKey)
	m.done("GetSecondStep", start, err)
	return r0, err
}

func (m *Store) DeleteMFA(ctx context.Context, userID string) error {
	start := time.Now()
	err := m.Store.DeleteMFA(ctx, userID)
	m.done("DeleteMFA", start, err)
	return err
}

func (m *Store) ListBackupCodes(ctx context.Context, userID string) ([]store.BackupCode, error) {
	start := time.Now()
	r0, err := m.Store.ListBackupCodes(ctx, userID)
	m.done("ListBackupCodes", start, err)
	return r0, err
}

func (m *Store) ReplaceBackupCodes(ctx context.Context, userID string, codes []store.BackupCode) error {
	start := time.Now()
	err := m.Store.ReplaceBackupCodes(ctx, userID, codes)
	m.done("ReplaceBackupCodes", start, err)
	return err
}

func (m *Store) UseBackupCode(ctx context.Context, userID string, hash []byte, now time.Time) (remaining int, err error) {
	start := time.Now()
	r0, err := m.Store.UseBackupCode(ctx, userID, hash, now)
	m.done("UseBackupCode", start, err)
	return r0, err
}

func (m *Store) GetThrottle(ctx context.Context, key string) (*store.Throttle, error) {
	start := time.Now()
	r0, err := m.Store.GetThrottle(ctx, key)
	m.done("GetThrottle", start, err)
	return r0, err
}

func (m *Store) GetThrottles(ctx context.Context, keys ...string) ([]store.Throttle, error) {
	start := time.Now()
	r0, err := m.Store.GetThrottles(ctx, keys...)
	m.done("GetThrottles", start, err)
	return r0, err
}

func (m *Store) GetPasswordStep(ctx context.Context, email string, keys ...string) (*store.User, []store.Throttle, error) {
	start := time.Now()
	r0, r1, err := m.Store.GetPasswordStep(ctx, email, keys...)
	m.done("GetPasswordStep", start, err)
	return r0, r1, err
}

func (m *Store) RecordFailure(ctx context.Context, key string, p store.ThrottlePolicy, now time.Time) (*store.Throttle, error) {
	start := time.Now()
	r0, err := m.Store.RecordFailure(ctx, key, p, now)
	m.done("RecordFailure", start, err)
	return r0, err
}

func (m *Store) ResetThrottle(ctx context.Context, key string) error {
	start := time.Now()
	err := m.Store.ResetThrottle(ctx, key)
	m.done("ResetThrottle", start, err)
	return err
}

func (m *Store) AddAuditEvent(ctx context.Context, e *store.AuditEvent) error {
	start := time.Now()
	err := m.Store.AddAuditEvent(ctx, e)
	m.done("AddAuditEvent", start, err)
	return err
}

func (m *Store) ListAuditEvents(ctx context.Context, userID string, limit int) ([]store.AuditEvent, error) {
	start := time.Now()
	r0, err := m.Store.ListAuditEvents(ctx, userID, limit)
	m.done("ListAuditEvents", start, err)
	return r0, err
}

func (m *Store) CreateToken(ctx context.Context, t *store.TokenRecord) error {
	start := time.Now()
	err := m.Store.CreateToken(ctx, t)
	m.done("CreateToken", start, err)
	return err
}

func (m *Store) GetToken(ctx context.Context, kind, signature string) (*store.TokenRecord, error) {
	start := time.Now()
	r0, err := m.Store.GetToken(ctx, kind, signature)
	m.done("GetToken", start, err)
	return r0, err
}

func (m *Store) GetTokenWithUser(ctx context.Context, kind, signature string) (*store.TokenRecord, *store.User, error) {
	start := time.Now()
	r0, r1, err := m.Store.GetTokenWithUser(ctx, kind, signature)
	m.done("GetTokenWithUser", start, err)
	return r0, r1, err
}

func (m *Store) DeleteToken(ctx context.Context, kind, signature string) error {
	start := time.Now()
	err := m.Store.DeleteToken(ctx, kind, signature)
	m.done("DeleteToken", start, err)
	return err
}

func (m *Store) DeactivateToken(ctx context.Context, kind, signature string) error {
	start := time.Now()
	err := m.Store.DeactivateToken(ctx, kind, signature)
	m.done("DeactivateToken", start, err)
	return err
}

func (m *Store) DeactivateTokensByRequest(ctx context.Context, requestID string, kinds ...string) error {
	start := time.Now()
	err := m.Store.DeactivateTokensByRequest(ctx, requestID, kinds...)
	m.done("DeactivateTokensByRequest", start, err)
	return err
}

func (m *Store) ExchangeTokens(ctx context.Context, x *store.TokenExchange) error {
	start := time.Now()
	err := m.Store.ExchangeTokens(ctx, x)
	m.done("ExchangeTokens", start, err)
	return err
}

func (m *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) (int, error) {
	start := time.Now()
	r0, err := m.Store.DeleteExpired(ctx, now, limit)
	m.done("DeleteExpired", start, err)
	return r0, err
}

func (m *Store) DeleteUserSession(ctx context.Context, userID, id string) error {
	start := time.Now()
	err := m.Store.DeleteUserSession(ctx, userID, id)
	m.done("DeleteUserSession", start, err)
	return err
}

func (m *Store) CreatePasswordReset(ctx context.Context, r *store.PasswordReset) error {
	start := time.Now()
	err := m.Store.CreatePasswordReset(ctx, r)
	m.done("CreatePasswordReset", start, err)
	return err
}

func (m *Store) GetPasswordReset(ctx context.Context, tokenHash []byte, now time.Time) (*store.PasswordReset, error) {
	start := time.Now()
	r0, err := m.Store.GetPasswordReset(ctx, tokenHash, now)
	m.done("GetPasswordReset", start, err)
	return r0, err
}

func (m *Store) ConsumePasswordReset(ctx context.Context, tokenHash []byte, now time.Time) (string, error) {
	start := time.Now()
	r0, err := m.Store.ConsumePasswordReset(ctx, tokenHash, now)
	m.done("ConsumePasswordReset", start, err)
	return r0, err
}

func (m *Store) EnqueueMail(ctx context.Context, mail *store.Mail) error {
	start := time.Now()
	err := m.Store.EnqueueMail(ctx, mail)
	m.done("EnqueueMail", start, err)
	return err
}

func (m *Store) ClaimMail(ctx context.Context, now, leaseUntil time.Time, limit int) ([]store.Mail, error) {
	start := time.Now()
	r0, err := m.Store.ClaimMail(ctx, now, leaseUntil, limit)
	m.done("ClaimMail", start, err)
	return r0, err
}

func (m *Store) MarkMailSent(ctx context.Context, id int64, now time.Time) error {
	start := time.Now()
	err := m.Store.MarkMailSent(ctx, id, now)
	m.done("MarkMailSent", start, err)
	return err
}

func (m *Store) RetryMail(ctx context.Context, id int64, next time.Time, lastError string) error {
	start := time.Now()
	err := m.Store.RetryMail(ctx, id, next, lastError)
	m.done("RetryMail", start, err)
	return err
}

func (m *Store) UpdateLocale(ctx context.Context, userID, locale string, now time.Time) error {
	start := time.Now()
	err := m.Store.UpdateLocale(ctx, userID, locale, now)
	m.done("UpdateLocale", start, err)
	return err
}

func (m *Store) ReleaseMail(ctx context.Context, id int64, claimedUntil time.Time) error {
	start := time.Now()
	err := m.Store.ReleaseMail(ctx, id, claimedUntil)
	m.done("ReleaseMail", start, err)
	return err
}

func (m *Store) GiveUpMail(ctx context.Context, id int64, lastError string) error {
	start := time.Now()
	err := m.Store.GiveUpMail(ctx, id, lastError)
	m.done("GiveUpMail", start, err)
	return err
}

func (m *Store) GetMail(ctx context.Context, id int64) (*store.Mail, error) {
	start := time.Now()
	r0, err := m.Store.GetMail(ctx, id)
	m.done("GetMail", start, err)
	return r0, err
}

func (m *Store) DeleteMailBefore(ctx context.Context, t time.Time, limit int) (int, error) {
	start := time.Now()
	r0, err := m.Store.DeleteMailBefore(ctx, t, limit)
	m.done("DeleteMailBefore", start, err)
	return r0, err
}
