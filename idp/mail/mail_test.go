package mail

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"
)

func TestBuild(t *testing.T) {
	body := "いつもご利用いただきありがとうございます。\nhttp://localhost/reset-password?token=abc\n" + strings.Repeat("長い行", 40)
	raw := Build("カメラID <no-reply@example.com>", "user@example.com", "[Camera ID] パスワード再設定のご案内", body,
		time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	for _, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("line of %d bytes", len(line))
		}
		for _, c := range []byte(line) {
			if c >= 0x80 {
				t.Fatalf("non-ASCII byte in the message: %q", line)
			}
		}
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subject != "[Camera ID] パスワード再設定のご案内" {
		t.Errorf("subject %q, %v", subject, err)
	}
	if from, err := msg.Header.AddressList("From"); err != nil || len(from) != 1 ||
		from[0].Name != "カメラID" || from[0].Address != "no-reply@example.com" {
		t.Errorf("From %v, %v", from, err)
	}
	if d, err := msg.Header.Date(); err != nil || !d.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("date %v, %v", d, err)
	}
	if id := msg.Header.Get("Message-ID"); !strings.HasSuffix(id, "@example.com>") {
		t.Errorf("Message-ID %q", id)
	}
	if ct := msg.Header.Get("Content-Type"); ct != "text/plain; charset=UTF-8" {
		t.Errorf("Content-Type %q", ct)
	}
	b, _ := io.ReadAll(msg.Body)
	dec, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
	if err != nil || strings.ReplaceAll(string(dec), "\r\n", "\n") != body {
		t.Errorf("body %q, %v", dec, err)
	}
}

func TestParseSMTPURL(t *testing.T) {
	s, err := ParseSMTPURL("smtp://user%40x:p%3Ass@mail.example.com?starttls=required")
	if err != nil || s.Host != "mail.example.com:587" || s.User != "user@x" || s.Pass != "p:ss" || !s.Required || s.Implicit {
		t.Errorf("%+v %v", s, err)
	}
	if s.String() != "smtp://mail.example.com:587" {
		t.Errorf("String() %q shows more than the server", s.String())
	}
	s, err = ParseSMTPURL("smtps://mail.example.com")
	if err != nil || s.Host != "mail.example.com:465" || !s.Implicit {
		t.Errorf("%+v %v", s, err)
	}
	for _, bad := range []string{"http://x", "smtp://", "smtp://h?starttls=maybe"} {
		if _, err := ParseSMTPURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestStartTLSRequired: with ?starttls=required, a server without STARTTLS
// gets no mail (and no credentials).
func TestStartTLSRequired(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		io.WriteString(c, "220 plain ESMTP\r\n")
		var seen []string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				got <- strings.Join(seen, "|")
				return
			}
			seen = append(seen, strings.TrimSpace(l))
			switch {
			case strings.HasPrefix(l, "EHLO"):
				io.WriteString(c, "250-plain\r\n250 AUTH PLAIN\r\n")
			case strings.HasPrefix(l, "QUIT"):
				io.WriteString(c, "221 bye\r\n")
			default:
				io.WriteString(c, "250 OK\r\n")
			}
		}
	}()
	s, _ := ParseSMTPURL("smtp://user:secret@" + ln.Addr().String() + "?starttls=required")
	err = s.Send(context.Background(), "a@example.com", "b@example.com", []byte("Subject: x\r\n\r\nx\r\n"))
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("send without STARTTLS: %v", err)
	}
	cmds := <-got
	if strings.Contains(cmds, "AUTH") || strings.Contains(cmds, "MAIL") {
		t.Errorf("the client went on without TLS: %s", cmds)
	}
}

func TestBackoff(t *testing.T) {
	w := &Worker{RetryBase: time.Second, RetryMax: 10 * time.Second}
	for attempts, lo := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 9: 10 * time.Second} {
		d := w.backoff(attempts)
		if d < lo || d > lo+lo/4 {
			t.Errorf("backoff(%d) = %v, want %v plus up to 25%%", attempts, d, lo)
		}
	}
}

func TestComposeWarning(t *testing.T) {
	for _, tc := range []struct {
		lang    string
		left    int
		warning string
	}{{"ja", 3, ""}, {"ja", 2, "【ご注意】"}, {"ja", 0, "【ご注意】"}, {"en", 2, "Warning:"}, {"en", 5, ""}} {
		m := Compose(BackupCodeUsed, Notice{Lang: tc.lang, Remaining: tc.left})
		has := strings.Contains(m.Body, "【ご注意】") || strings.Contains(m.Body, "Warning:")
		if has != (tc.warning != "") || (tc.warning != "" && !strings.Contains(m.Body, tc.warning)) {
			t.Errorf("%s with %d left: warning %v\n%s", tc.lang, tc.left, has, m.Body)
		}
	}
}
