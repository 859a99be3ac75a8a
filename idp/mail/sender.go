package mail

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Sender delivers one formatted message.
type Sender interface {
	Send(ctx context.Context, from, to string, msg []byte) error
}

// defaultSendTimeout bounds one delivery when nothing else is set.
const defaultSendTimeout = 30 * time.Second

// SMTP sends through a mail server, configured by a URL:
//
//	smtp://user:pass@host:587                      STARTTLS when the server offers it
//	smtp://user:pass@host:587?starttls=required    refuse to send without STARTTLS
//	smtps://user:pass@host:465                     implicit TLS
//
// Credentials are sent only over TLS (or to a loopback server).
type SMTP struct {
	Host      string // host:port
	Implicit  bool   // smtps
	Required  bool   // ?starttls=required
	User      string
	Pass      string
	Timeout   time.Duration // per delivery; 0: defaultSendTimeout
	TLSConfig *tls.Config   // nil: verify the server name (tests set RootCAs)
	// StopGrace is how long a delivery goes on once its context is
	// cancelled (the instance stopping); 0: defaultStopGrace.
	StopGrace time.Duration
}

// defaultStopGrace lets a delivery under way when the instance stops
// finish, as a healthy server's does within it, rather than cut it off
// after its message went and before the server's answer came back (which
// would send the mail again); a silent server holds the stop no longer.
const defaultStopGrace = 5 * time.Second

// ParseSMTPURL reads IDP_SMTP_URL.
func ParseSMTPURL(raw string) (*SMTP, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("IDP_SMTP_URL: not a URL")
	}
	s := &SMTP{}
	switch u.Scheme {
	case "smtp":
	case "smtps":
		s.Implicit = true
	default:
		return nil, fmt.Errorf("IDP_SMTP_URL: scheme %q: want smtp or smtps", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("IDP_SMTP_URL: no host")
	}
	port := u.Port()
	if port == "" {
		port = "587"
		if s.Implicit {
			port = "465"
		}
	}
	s.Host = net.JoinHostPort(u.Hostname(), port)
	if u.User != nil {
		s.User = u.User.Username()
		s.Pass, _ = u.User.Password()
	}
	switch v := u.Query().Get("starttls"); v {
	case "", "auto":
	case "required":
		s.Required = true
	default:
		return nil, fmt.Errorf("IDP_SMTP_URL: starttls=%q: want auto or required", v)
	}
	return s, nil
}

// String describes the server without the password.
func (s *SMTP) String() string {
	scheme := "smtp"
	if s.Implicit {
		scheme = "smtps"
	}
	return scheme + "://" + s.Host
}

// Send delivers msg with one SMTP conversation.
func (s *SMTP) Send(ctx context.Context, from, to string, msg []byte) error {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = defaultSendTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host, _, _ := net.SplitHostPort(s.Host)
	tlsConf := s.TLSConfig
	if tlsConf == nil {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tlsConf = tlsConf.Clone()
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = host
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Host)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancelled (the instance stopping), the conversation ends within
	// StopGrace, not at its deadline: a silent server would hold up the
	// stop. The deadline is set on the TCP connection, which a TLS one
	// below reads and writes through.
	grace := cmp.Or(s.StopGrace, defaultStopGrace)
	raw := conn
	stop := context.AfterFunc(ctx, func() {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > grace {
			_ = raw.SetDeadline(time.Now().Add(grace))
		}
	})
	defer stop()
	if s.Implicit {
		tc := tls.Client(conn, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return err
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello(helloName()); err != nil {
		return err
	}
	if !s.Implicit {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsConf); err != nil {
				return err
			}
		} else if s.Required {
			return errors.New("the server does not offer STARTTLS (starttls=required)")
		}
	}
	if s.User != "" {
		if err := c.Auth(smtp.PlainAuth("", s.User, s.Pass, host)); err != nil {
			return err
		}
	}
	if err := c.Mail(from); err != nil {
		return refused(err)
	}
	if err := c.Rcpt(to); err != nil {
		return refused(err)
	}
	w, err := c.Data()
	if err != nil {
		return refused(err)
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return refused(err)
	}
	// The server took the mail (250 after its data): it is sent, whatever
	// becomes of QUIT. Reported as failed, it would be sent again.
	_ = c.Quit()
	return nil
}

// RefusedError is a mail server's permanent refusal of a message: a 5xx
// reply to its sender, recipient or content (RFC 5321 4.2.1), such as an
// unknown mailbox. Sending the same mail again cannot succeed. Not
// permanent: 4xx replies; refusals of the login or TLS; and 5xx replies
// that point at this server's configuration rather than the message, 530
// (authentication required, RFC 4954) and the security or policy class
// 5.7.x of enhanced status codes (RFC 3463: relaying denied, for one):
// once the configuration is fixed, those mails go.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

func refused(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 && te.Code < 600 && te.Code != 530 && !strings.HasPrefix(te.Msg, "5.7.") {
		return &RefusedError{Err: err}
	}
	return err
}

func helloName() string {
	h, err := os.Hostname()
	if err != nil || h == "" || strings.ContainsAny(h, " \t\r\n") {
		return "localhost"
	}
	return h
}

// Dir is the embedded default without a mail server: each mail becomes an
// .eml file in a folder, and the log says where (never what it holds, nor
// to whom).
type Dir struct {
	Path   string
	Logger *slog.Logger
	n      atomic.Int64
}

// Send writes msg to a new file in the folder.
func (d *Dir) Send(_ context.Context, _, _ string, msg []byte) error {
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return err
	}
	name := time.Now().UTC().Format("20060102T150405") + "-" + strconv.FormatInt(d.n.Add(1), 10) + "-" +
		strconv.Itoa(os.Getpid()) + ".eml"
	p := filepath.Join(d.Path, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, msg, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	if d.Logger != nil {
		d.Logger.Info("mail written to the dev mail folder (no IDP_SMTP_URL)", "file", p)
	}
	return nil
}
