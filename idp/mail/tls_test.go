package mail

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// tlsServer is an SMTP server on loopback that speaks TLS from the start
// (smtps) or after STARTTLS, with a certificate for 127.0.0.1 signed by its
// own CA. It records, for each conversation, whether the connection was
// encrypted when credentials and the message came.
type tlsServer struct {
	addr  string
	roots *x509.CertPool
	got   chan tlsConversation
}

type tlsConversation struct {
	authOverTLS, dataOverTLS bool
	auth, data               string
}

func newTLSServer(t *testing.T, implicit bool) *tlsServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test mail server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	conf := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &tlsServer{addr: ln.Addr().String(), roots: roots, got: make(chan tlsConversation, 4)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.converse(c, conf, implicit)
		}
	}()
	return s
}

func (s *tlsServer) converse(c net.Conn, conf *tls.Config, implicit bool) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var conv tlsConversation
	encrypted := false
	if implicit {
		c = tls.Server(c, conf)
		encrypted = true
	}
	r := bufio.NewReader(c)
	io.WriteString(c, "220 test ESMTP\r\n")
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return // a client that gave up (a refused certificate) reports nothing
		}
		cmd := strings.ToUpper(strings.TrimSpace(l))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			if encrypted {
				io.WriteString(c, "250-test\r\n250 AUTH PLAIN\r\n")
			} else {
				io.WriteString(c, "250-test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n")
			}
		case cmd == "STARTTLS":
			io.WriteString(c, "220 go ahead\r\n")
			c = tls.Server(c, conf)
			r = bufio.NewReader(c)
			encrypted = true
		case strings.HasPrefix(cmd, "AUTH PLAIN"):
			b, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(l)[len("AUTH PLAIN "):])
			conv.auth, conv.authOverTLS = string(b), encrypted
			io.WriteString(c, "235 ok\r\n")
		case cmd == "DATA":
			io.WriteString(c, "354 go on\r\n")
			var data strings.Builder
			for {
				dl, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if dl == ".\r\n" {
					break
				}
				data.WriteString(dl)
			}
			conv.data, conv.dataOverTLS = data.String(), encrypted
			io.WriteString(c, "250 queued\r\n")
		case cmd == "QUIT":
			io.WriteString(c, "221 bye\r\n")
			s.got <- conv
			return
		default:
			io.WriteString(c, "250 ok\r\n")
		}
	}
}

// TestSMTPOverTLS sends through a server offering STARTTLS and one with
// implicit TLS (smtps): the credentials and the message travel encrypted
// and arrive whole; a server whose certificate is not trusted gets
// neither.
func TestSMTPOverTLS(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		scheme := "smtp"
		if implicit {
			scheme = "smtps"
		}
		t.Run(scheme, func(t *testing.T) {
			srv := newTLSServer(t, implicit)
			// smtp:// without ?starttls=: the default, STARTTLS when offered.
			s, err := ParseSMTPURL(scheme + "://user:s3cret@" + srv.addr)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("Subject: test\r\n\r\nパスワード再設定\r\n")

			// The system's roots do not know the server's CA: nothing is sent.
			s.Timeout = 5 * time.Second
			if err := s.Send(context.Background(), "a@example.com", "b@example.com", msg); err == nil ||
				!strings.Contains(err.Error(), "certificate") {
				t.Fatalf("send to an untrusted server: %v, want a certificate error", err)
			}
			select {
			case conv := <-srv.got:
				t.Fatalf("an untrusted server got a conversation: %+v", conv)
			default:
			}

			s.TLSConfig = &tls.Config{RootCAs: srv.roots, MinVersion: tls.VersionTLS12}
			if err := s.Send(context.Background(), "a@example.com", "b@example.com", msg); err != nil {
				t.Fatal(err)
			}
			conv := <-srv.got
			if !conv.authOverTLS || !conv.dataOverTLS {
				t.Errorf("credentials over TLS %v, message over TLS %v", conv.authOverTLS, conv.dataOverTLS)
			}
			if conv.auth != "\x00user\x00s3cret" || conv.data != string(msg) {
				t.Errorf("auth %q, data %q", conv.auth, conv.data)
			}
		})
	}
}
