package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kamera-id/idp/idp/testenv"
)

// TestShutdownSendsLateResetMail: a password reset requested at the very
// end of serving has its link made and its mail queued after the answer
// (and here after the listeners closed: the test holds the insert of the
// link back until then); serve waits for that work before it stops the mail
// sender, and sends the mail before it closes the store, instead of leaving
// it queued until the next start.
func TestShutdownSendsLateResetMail(t *testing.T) {
	db := testenv.Postgres(t) // a table lock holds the link's insert back
	t.Chdir(t.TempDir())      // the dev mail folder of PostgreSQL is ./data/mail
	public := freeAddr(t)
	t.Setenv("IDP_DATABASE_URL", db.URL)
	t.Setenv("IDP_SECRET_KEY", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
	t.Setenv("IDP_ARGON2_MEMORY_KIB", "8192")
	t.Setenv("IDP_ARGON2_ITERATIONS", "1")
	t.Setenv("IDP_LOG_LEVEL", "error")
	t.Setenv("IDP_LISTEN", public)
	if _, err := cli(t, "", "migrate"); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if _, err := cli(t, "a-long-password\n", "user", "create", "--email", "ken@example.com", "--password-stdin"); err != nil {
		t.Fatalf("user create: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, nil, io.Discard) }()
	base := "http://" + public
	waitStatus(t, base+"/readyz", http.StatusOK, done)

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(base + "/forgot-password")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]*)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf token on /forgot-password:\n%.500s", page)
	}

	// Hold back the link's insert (the work after the answer).
	lockCtx, lockCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer lockCancel()
	conn, err := pgx.Connect(lockCtx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(lockCtx)
	tx, err := conn.Begin(lockCtx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(lockCtx) }() // a no-op once committed
	if _, err := tx.Exec(lockCtx, "LOCK TABLE password_resets IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	req, _ := http.NewRequest(http.MethodPost, base+"/forgot-password",
		bytes.NewBufferString(url.Values{"csrf": {string(m[1])}, "email": {"ken@example.com"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /forgot-password: %d", resp.StatusCode)
	}

	cancel() // SIGTERM, no drain: the listener closes at once
	deadline := time.Now().Add(10 * time.Second)
	for fresh(t, base+"/readyz") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("still serving after the stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The shutdown is past the listeners now (the old order stopped the
	// mail sender right there); let it get on, then let the link in.
	time.Sleep(200 * time.Millisecond)
	if err := tx.Commit(lockCtx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	mails, _ := filepath.Glob(filepath.Join("data", "mail", "*.eml"))
	if len(mails) != 1 {
		t.Fatalf("mails sent by the time serve returned: %q, want the reset link's", mails)
	}
}
