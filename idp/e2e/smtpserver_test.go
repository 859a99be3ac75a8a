package e2e

import (
	"bufio"
	"encoding/base64"
	"io"
	"mime"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpServer is a small real SMTP server on loopback (EHLO/HELO, MAIL,
// RCPT, DATA, RSET, NOOP, QUIT, no extensions), which a test can stop and
// start again on the same port to play a mail server outage.
type smtpServer struct {
	t    *testing.T
	addr string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	mails []received
	cond  *sync.Cond
}

// received is one delivered mail, decoded.
type received struct {
	From, To string
	Subject  string
	Body     string
	Header   mail.Header
}

func newSMTPServer(t *testing.T) *smtpServer {
	t.Helper()
	s := &smtpServer{t: t, conns: map[net.Conn]bool{}}
	s.cond = sync.NewCond(&s.mu)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// URL is the server as IDP_SMTP_URL.
func (s *smtpServer) URL() string { return "smtp://" + s.addr }

func (s *smtpServer) serve(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			go s.handle(c)
		}
	}()
}

// Stop closes the listener and every connection: the server is down.
func (s *smtpServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
}

// Start listens again on the same address.
func (s *smtpServer) Start() {
	s.t.Helper()
	var ln net.Listener
	var err error
	for range 100 { // the port was just released; take it back
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.serve(ln)
}

func (s *smtpServer) handle(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	r := bufio.NewReader(c)
	w := func(line string) bool {
		_, err := io.WriteString(c, line+"\r\n")
		return err == nil
	}
	if !w("220 test.local ESMTP") {
		return
	}
	var from, to string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			w("250-test.local")
			w("250 8BITMIME")
		case strings.HasPrefix(cmd, "HELO"):
			w("250 test.local")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			from, _, _ = strings.Cut(strings.TrimSpace(line)[10:], ">")
			from = strings.Trim(from, "< ")
			w("250 OK")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			to, _, _ = strings.Cut(strings.TrimSpace(line)[8:], ">")
			to = strings.Trim(to, "< ")
			w("250 OK")
		case cmd == "DATA":
			w("354 go ahead")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			s.store(from, to, data.String())
			w("250 OK queued")
		case cmd == "RSET", cmd == "NOOP":
			w("250 OK")
		case cmd == "QUIT":
			w("221 bye")
			return
		default:
			w("502 not implemented")
		}
	}
}

func (s *smtpServer) store(from, to, data string) {
	m := received{From: from, To: to}
	msg, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		s.t.Errorf("unparsable mail: %v", err)
		return
	}
	m.Header = msg.Header
	m.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		s.t.Errorf("subject: %v", err)
	}
	raw, _ := io.ReadAll(msg.Body)
	body, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(raw)))
	if err != nil {
		s.t.Errorf("body: %v", err)
	}
	m.Body = strings.ReplaceAll(string(body), "\r\n", "\n")
	s.mu.Lock()
	s.mails = append(s.mails, m)
	s.cond.Broadcast()
	s.mu.Unlock()
}

// all returns the mails received so far.
func (s *smtpServer) all() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.mails...)
}

// waitFor waits (up to a deadline) for a mail to to whose subject contains
// subject, and returns it.
func (s *smtpServer) waitFor(to, subject string) received {
	s.t.Helper()
	return s.waitForBody(to, subject, "")
}

// waitForBody is waitFor for a mail whose body also contains body.
func (s *smtpServer) waitForBody(to, subject, body string) received {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	timer := time.AfterFunc(15*time.Second, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for _, m := range s.mails {
			if m.To == to && strings.Contains(m.Subject, subject) && strings.Contains(m.Body, body) {
				return m
			}
		}
		if time.Now().After(deadline) {
			var got []string
			for _, m := range s.mails {
				got = append(got, m.To+": "+m.Subject)
			}
			s.t.Fatalf("no mail to %s about %q within the deadline; got %q", to, subject, got)
		}
		s.cond.Wait()
	}
}

// count is how many mails to to have subject in theirs.
func (s *smtpServer) count(to, subject string) int {
	n := 0
	for _, m := range s.all() {
		if m.To == to && strings.Contains(m.Subject, subject) {
			n++
		}
	}
	return n
}
