package chatclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Login is a login session: the token to connect with and who it is.
type Login struct {
	Token      string `json:"token"`
	Identifier string `json:"identifier"`
	Username   string `json:"username"`
}

// loginRequest is the body of a dev login.
type loginRequest struct {
	Username string `json:"username"`
}

// DevLogin logs username in with the dev login of the server at base (an
// http or https base URL; the server runs with CHAT_DEV_LOGIN=true) and
// returns the login session. hc makes the request; if nil,
// http.DefaultClient. A refusal is a *StatusError: 404 when dev login is
// off, 400 for a name that breaks the rules, 429 past the server's login
// limit.
func DevLogin(ctx context.Context, hc *http.Client, base, username string) (Login, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	url := strings.TrimRight(base, "/") + "/auth/dev/login"
	body, err := json.Marshal(loginRequest{Username: username})
	if err != nil {
		return Login{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Login{}, fmt.Errorf("chatclient: dev login: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return Login{}, fmt.Errorf("chatclient: dev login %s: %w", username, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Login{}, fmt.Errorf("chatclient: dev login %s: %w", username, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Login{}, &StatusError{Op: opLogin, URL: url, Status: resp.StatusCode, Body: firstLine(data)}
	}
	var l Login
	if err := json.Unmarshal(data, &l); err != nil || l.Token == "" {
		return Login{}, fmt.Errorf("chatclient: dev login %s: unexpected answer %.200q", username, data)
	}
	return l, nil
}

// firstLine is the start of an HTTP error body, for an error message.
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// Logout revokes the login session of token at the server at base (POST
// /auth/logout): the token stops working on every node, and the
// websockets of that session, and only those, are closed with 1000 (a
// Client on it ends with ErrLoggedOut). hc makes the request; if nil,
// http.DefaultClient. A refusal is a *StatusError (401: no such session).
func Logout(ctx context.Context, hc *http.Client, base, token string) error {
	if hc == nil {
		hc = http.DefaultClient
	}
	url := strings.TrimRight(base, "/") + "/auth/logout"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return fmt.Errorf("chatclient: logout: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("chatclient: logout: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return &StatusError{Op: opLogout, URL: url, Status: resp.StatusCode, Body: firstLine(data)}
	}
	return nil
}
