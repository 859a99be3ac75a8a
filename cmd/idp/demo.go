package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/store"
)

// The demo account and relying party of `make run`.
const (
	demoEmail    = "demo@example.com"
	demoPassword = "demo-password-123"
	demoClientID = "demo-viewer"
)

// demoSetup creates the demo user and the demo viewer's client when they
// are missing, and writes the client's credentials for cmd/demo-viewer.
func demoSetup(ctx context.Context, args []string, stdout io.Writer) error {
	clientFile := "./data/demo-client.json"
	viewer := "http://localhost:9090"
	if err := flags("demo-setup", args, func(fs *flag.FlagSet) {
		fs.StringVar(&clientFile, "client-file", clientFile, "")
		fs.StringVar(&viewer, "viewer", viewer, "")
	}); err != nil {
		return err
	}
	a, _, err := openApp(ctx) // the newcomer's first store: not named
	if err != nil {
		return err
	}
	defer a.Close()

	if _, err := a.Store.GetUserByEmail(ctx, demoEmail); errors.Is(err, store.ErrNotFound) {
		if _, err := a.CreateUser(ctx, app.NewUser{Email: demoEmail, Name: "デモ ユーザー", Password: demoPassword}); err != nil {
			return fmt.Errorf("demo-setup: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("demo-setup: %w", err)
	}

	_, statErr := os.Stat(clientFile)
	if _, err := a.Store.GetClient(ctx, demoClientID); errors.Is(err, store.ErrNotFound) {
		c, secret, err := a.CreateClient(ctx, app.NewClient{
			ID: demoClientID, Name: "カメラビューア (デモ)", FirstParty: true,
			RedirectURIs: []string{viewer + "/callback"}, PostLogoutRedirectURIs: []string{viewer + "/"},
		})
		if err != nil {
			return fmt.Errorf("demo-setup: %w", err)
		}
		b, _ := json.MarshalIndent(map[string]string{"client_id": c.ID, "client_secret": secret}, "", "  ")
		if err := os.MkdirAll(filepath.Dir(clientFile), 0o700); err != nil {
			return fmt.Errorf("demo-setup: %w", err)
		}
		if err := os.WriteFile(clientFile, append(b, '\n'), 0o600); err != nil {
			return fmt.Errorf("demo-setup: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("demo-setup: %w", err)
	} else if statErr != nil {
		return fmt.Errorf("demo-setup: client %s exists but %s is missing; remove ./data to start afresh", demoClientID, clientFile)
	}
	fmt.Fprintf(stdout, "Provider:    %s\nDemo viewer: %s\nLog in as:   %s / %s\n", a.Config.Issuer, viewer, demoEmail, demoPassword)
	return nil
}
