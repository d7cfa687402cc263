package auth

import (
	"crypto/subtle"
	"errors"
	"html/template"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// The social login flow (spec section 2; RFC 9700, OAuth 2.0 Security Best
// Current Practice):
//
//  1. GET /auth/{provider}/login makes a random state, a PKCE verifier, a
//     nonce and a browser binding; stores the first three and the binding's
//     hash in the StateStore under the state's hash for loginTTL; sets the
//     binding in a short-lived cookie on /auth/; and redirects to the
//     provider with the state, the S256 challenge and (OpenID Connect) the
//     nonce.
//  2. The provider sends the browser back to /auth/{provider}/callback with
//     the state and a code. The callback takes the state out of the store
//     (single use, on whatever node it lands), checks that it was issued
//     for this provider, to this browser, less than loginTTL ago, then has
//     the provider exchange the code with the verifier and identify the
//     account, maps it to a user and starts a fresh session.
//
// Any failure answers a short HTML page (400 for a request we refuse, 401
// for a login the provider refused or we could not verify) and creates
// neither a user nor a session.

// loginTTL is how long a started login may take.
const loginTTL = 10 * time.Minute

// loginCookie binds a pending login to the browser that started it, so that
// a callback URL (its state and code) is useless in another browser: login
// CSRF and code injection fail (RFC 9700 2.1 and 4.7).
const loginCookie = "chat_login"

// issuerChecker is a provider that names itself in its authorization
// responses (RFC 9207), the defence against mix-up attacks (RFC 9700 4.4).
type issuerChecker interface {
	// authorizationIssuer returns the issuer and whether the provider
	// promises to send it.
	authorizationIssuer() (iss string, required bool)
}

func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) {
	p := s.provider(r.PathValue("provider"))
	if p == nil {
		http.NotFound(w, r)
		return
	}
	if s.loginLimited(w, r, p.Name()) {
		return
	}
	state, binding, nonce := newToken(), newToken(), newToken()
	verifier := oauth2.GenerateVerifier()
	st := LoginState{
		Provider: p.Name(),
		Verifier: verifier,
		Nonce:    nonce,
		Binding:  hashToken(binding),
		Created:  s.now(),
	}
	// The store knows the state only by its hash, like session tokens.
	if err := s.cfg.States.Put(r.Context(), hashToken(state), st, loginTTL); err != nil {
		if errors.Is(err, ErrStateFull) {
			s.log.Warn("login refused", "provider", p.Name(), "err", err)
			s.loginPage(w, http.StatusServiceUnavailable, p.Name(), "Too many logins are under way. Please try again in a few minutes.")
			return
		}
		s.loginFailed(w, p.Name(), "start login", err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     loginCookie,
		Value:    binding,
		Path:     "/auth/",
		MaxAge:   int(loginTTL / time.Second),
		HttpOnly: true,
		Secure:   s.cfg.SecureCookie,
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, p.AuthCodeURL(state, verifier, nonce), http.StatusFound)
}

func (s *Service) handleCallback(w http.ResponseWriter, r *http.Request) {
	p := s.provider(r.PathValue("provider"))
	if p == nil {
		http.NotFound(w, r)
		return
	}
	name := p.Name()
	// The URL holds a code: keep it out of Referer headers and caches.
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	// Refused before the login cookie is cleared and the state taken, so
	// that the same callback works when tried again after the wait.
	if s.loginLimited(w, r, name) {
		return
	}
	// The login ends here, whatever happens.
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/auth/", MaxAge: -1, HttpOnly: true, Secure: s.cfg.SecureCookie, SameSite: http.SameSiteLaxMode})

	refuse := func(status int, reason, msg string) {
		s.log.Warn("login refused", "provider", name, "reason", reason)
		s.loginPage(w, status, name, msg)
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		refuse(http.StatusBadRequest, "no state", "This login link is incomplete. Please start the login again.")
		return
	}
	st, err := s.cfg.States.Take(r.Context(), hashToken(state))
	if errors.Is(err, ErrNoState) {
		refuse(http.StatusBadRequest, "unknown, used or expired state", "This login has expired or was already used. Please start the login again.")
		return
	}
	if err != nil {
		s.loginFailed(w, name, "take login state", err)
		return
	}
	if st.Provider != name {
		// A state from one provider's login at another's callback is a
		// mix-up attack or a confused browser (RFC 9700 4.4).
		refuse(http.StatusBadRequest, "state issued for "+st.Provider, "This login was started with another provider. Please start the login again.")
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(hashToken(c.Value)), []byte(st.Binding)) != 1 {
		refuse(http.StatusBadRequest, "login cookie missing or wrong", "This login was started in another browser, or your browser did not keep its cookie. Please start the login again in this browser.")
		return
	}
	if age := s.now().Sub(st.Created); age < 0 || age > loginTTL {
		refuse(http.StatusBadRequest, "state expired", "This login has expired. Please start the login again.")
		return
	}
	if e := q.Get("error"); e != "" {
		msg := "The provider did not log you in. Please try again."
		if e == "access_denied" {
			msg = "The login was cancelled or refused at the provider."
		}
		s.log.Info("login refused by the provider", "provider", name, "error", e)
		s.loginPage(w, http.StatusUnauthorized, name, msg)
		return
	}
	if ic, ok := p.(issuerChecker); ok {
		iss, required := ic.authorizationIssuer()
		if got := q.Get("iss"); (got != "" || required) && got != iss {
			refuse(http.StatusBadRequest, "missing or wrong iss parameter", "This answer did not come from the provider the login was started with. Please start the login again.")
			return
		}
	}
	code := q.Get("code")
	if code == "" {
		refuse(http.StatusBadRequest, "no code", "This login link is incomplete. Please start the login again.")
		return
	}
	id, err := p.Identify(r.Context(), code, st.Verifier, st.Nonce)
	if err != nil {
		s.log.Warn("login failed", "provider", name, "err", err)
		s.loginPage(w, http.StatusUnauthorized, name, "Your login could not be verified with the provider. Please try again.")
		return
	}
	u, err := s.store.UserForIdentity(r.Context(), name, id.Subject, id.Login, deriveUserID(s.ids, name, id.Subject))
	if err != nil {
		s.loginFailed(w, name, "find user", err)
		return
	}
	if _, err := s.startSession(w, r, u, name); err != nil {
		s.loginFailed(w, name, "start session", err)
		return
	}
	http.Redirect(w, r, "/", http.StatusFound)
}

// loginFailed answers a failure of our own or of a store during a login.
func (s *Service) loginFailed(w http.ResponseWriter, provider, what string, err error) {
	if errors.Is(err, ErrUnavailable) {
		s.log.Warn(what+" failed", "provider", provider, "err", err)
		s.loginPage(w, http.StatusServiceUnavailable, provider, "The service is unavailable. Please try again in a moment.")
		return
	}
	s.log.Error(what+" failed", "provider", provider, "err", err)
	s.loginPage(w, http.StatusInternalServerError, provider, "Something went wrong on our side. Please try again.")
}

var loginPageTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Login failed</title></head>
<body>
<h1>Login failed</h1>
<p>{{.Message}}</p>
<p><a href="{{.Retry}}">Log in with {{.Provider}} again</a> or <a href="/">go back to the chat</a>.</p>
</body>
</html>
`))

// loginPage answers a failed login: a short page with links back.
func (s *Service) loginPage(w http.ResponseWriter, status int, provider, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	w.WriteHeader(status)
	loginPageTmpl.Execute(w, struct{ Message, Provider, Retry string }{msg, provider, "/auth/" + provider + "/login"})
}
