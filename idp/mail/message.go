// Package mail sends the provider's e-mails: the security notices and the
// password reset links. Mails are queued in the store (the outbox) by the
// request that causes them and sent by a background Worker, so a slow or
// unreachable mail server neither slows a request nor loses a mail.
package mail

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"time"
)

// Build formats a plain-text UTF-8 message: RFC 2047 encoded subject and
// From display name, base64 body, Date, Message-ID, From and To.
func Build(from, to, subject, body string, now time.Time) []byte {
	domain := "localhost"
	if a, err := mail.ParseAddress(from); err == nil {
		if _, d, ok := strings.Cut(a.Address, "@"); ok && d != "" {
			domain = d
		}
		from = a.String() // a display name outside ASCII RFC 2047 encoded
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", from)
	h("To", to)
	h("Subject", mime.BEncoding.Encode("UTF-8", subject))
	h("Date", now.Format(time.RFC1123Z))
	h("Message-ID", "<"+hex.EncodeToString(id)+"@"+domain+">")
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=UTF-8")
	h("Content-Transfer-Encoding", "base64")
	b.WriteString("\r\n")
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	enc := base64.StdEncoding.EncodeToString([]byte(body))
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}
