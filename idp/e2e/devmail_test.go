package e2e

import (
	"context"
	"encoding/base64"
	"log/slog"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/testenv"
)

// TestDevMailFolder: without IDP_SMTP_URL, the embedded default writes each
// mail as an .eml file to the data folder's mail/ and logs the file (never
// the link or the address), so a reset link can be followed from there.
func TestDevMailFolder(t *testing.T) {
	db := testenv.SQLite(t)
	logs := &syncBuffer{}
	cfg := testConfig(db, func(c *config.Config) { c.MailPoll = 20 * time.Millisecond })
	p := startProviderLogging(t, cfg, newClock(), slog.New(slog.NewTextHandler(logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.app.RunMail(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	dir := filepath.Join(filepath.Dir(strings.TrimPrefix(db.URL, "sqlite://")), "mail")
	if got := cfg.MailDir(); got != dir {
		t.Fatalf("MailDir %q, want %q", got, dir)
	}
	p.createUser(email, password)
	requestReset(t, p, p.newBrowser(), email)

	var files []string
	deadline := time.Now().Add(15 * time.Second)
	for len(files) == 0 {
		files, _ = filepath.Glob(filepath.Join(dir, "*.eml"))
		if time.Now().After(deadline) {
			t.Fatalf("no .eml file in %s", dir)
		}
		time.Sleep(10 * time.Millisecond) // polling the folder with a deadline
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if !strings.Contains(subject, "パスワード再設定") || msg.Header.Get("To") != email {
		t.Errorf("mail file: subject %q, to %q", subject, msg.Header.Get("To"))
	}
	body := make([]byte, len(raw))
	n, _ := base64.StdEncoding.Decode(body, []byte(strings.NewReplacer("\r", "", "\n", "").Replace(string(raw[strings.Index(string(raw), "\r\n\r\n")+4:]))))
	link := resetLinkRE.FindString(string(body[:n]))
	if link == "" {
		t.Fatalf("no link in the mail file:\n%s", body[:n])
	}
	if pg := p.newBrowser().get(link); pg.formWith("new_password") == nil {
		t.Errorf("the link from the mail file does not lead to the form: %d", pg.Status)
	}
	// Wait for the log line naming the file; it must not hold the token.
	for !strings.Contains(logs.String(), files[0]) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not name %s:\n%s", files[0], logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	token := link[strings.Index(link, "token=")+len("token="):]
	if strings.Contains(logs.String(), token) {
		t.Error("the reset token is in the log")
	}
	if strings.Contains(logs.String(), email) {
		t.Error("the recipient's address is in the log")
	}
}
