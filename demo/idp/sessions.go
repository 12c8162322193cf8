package idp

import (
	"net/http"
	"sort"
	"strings"
	"time"
)

// sessionCookie names the IdP's browser session cookie. Cookies ignore
// ports, so the name must not clash with the relying party's own cookies
// when both run on the same host.
const sessionCookie = "demo_idp_session"

// session is an IdP session: one login of a user. Every login has one and
// its sid goes into the ID tokens; with RememberSessions the browser also
// keeps it in a cookie (whose value is not the sid, since the sid is shown
// to relying parties).
type session struct {
	sid, subject, cookie string
	authTime             time.Time
	clients              map[string]bool // clients that received tokens in this session
}

// sessionInfo is what a code needs of a session, copied out of the lock.
type sessionInfo struct {
	sid, subject string
	authTime     time.Time
}

// endedSession is what back-channel logout needs of an ended session.
type endedSession struct {
	sid, subject string
	clients      []string
}

// startSession records a successful login and returns its session. With
// RememberSessions, re-authenticating in the browser's session of the same
// user keeps that session (and its sid); a different user's session in the
// browser is ended and replaced.
func (p *Provider) startSession(w http.ResponseWriter, r *http.Request, subject string) sessionInfo {
	now := time.Now()
	var ended []endedSession
	p.mu.Lock()
	if s := p.cookieSessionLocked(r); s != nil {
		if s.subject == subject {
			s.authTime = now
			info := sessionInfo{sid: s.sid, subject: s.subject, authTime: s.authTime}
			p.mu.Unlock()
			return info
		}
		ended = append(ended, p.endLocked(s))
	}
	s := &session{sid: randomString(), subject: subject, authTime: now, clients: map[string]bool{}}
	p.sessions[s.sid] = s
	if p.remember {
		s.cookie = randomString()
		p.cookies[s.cookie] = s.sid
	}
	p.mu.Unlock()
	if s.cookie != "" {
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.cookie, Path: p.cookiePath,
			HttpOnly: true, Secure: p.secureCookie, SameSite: http.SameSiteLaxMode})
	}
	_ = p.notify(ended) // failures are recorded in BackchannelResults
	return sessionInfo{sid: s.sid, subject: subject, authTime: now}
}

// browserSession returns the remembered IdP session of the request's
// browser, if RememberSessions is on and the session and its user live.
func (p *Provider) browserSession(r *http.Request) (sessionInfo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.cookieSessionLocked(r)
	if s == nil {
		return sessionInfo{}, false
	}
	if _, ok := p.users[s.subject]; !ok {
		return sessionInfo{}, false
	}
	return sessionInfo{sid: s.sid, subject: s.subject, authTime: s.authTime}, true
}

// cookieSessionLocked finds the session the request's cookie names; nil
// without RememberSessions. p.mu must be held.
func (p *Provider) cookieSessionLocked(r *http.Request) *session {
	if !p.remember {
		return nil
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	return p.sessions[p.cookies[c.Value]]
}

// clearCookie tells the browser to forget its IdP session, if it has one.
func (p *Provider) clearCookie(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(sessionCookie); err != nil {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: p.cookiePath, MaxAge: -1,
		HttpOnly: true, Secure: p.secureCookie, SameSite: http.SameSiteLaxMode})
}

// endLocked forgets a session, the codes issued in it and its tokens,
// except those of offline_access grants (OIDC Back-Channel Logout 1.0,
// section 2.7), and returns what the back-channel logout needs. p.mu must
// be held.
func (p *Provider) endLocked(s *session) endedSession {
	delete(p.sessions, s.sid)
	delete(p.cookies, s.cookie)
	for c, ac := range p.codes {
		if ac.sid == s.sid {
			delete(p.codes, c)
		}
	}
	for _, tokens := range []map[string]grant{p.access, p.refresh} {
		for t, g := range tokens {
			if g.sid == s.sid && !contains(strings.Fields(g.scope), "offline_access") {
				delete(tokens, t)
			}
		}
	}
	e := endedSession{sid: s.sid, subject: s.subject}
	for c := range s.clients {
		e.clients = append(e.clients, c)
	}
	sort.Strings(e.clients)
	return e
}

// Sessions returns how many live IdP sessions the subject has.
func (p *Provider) Sessions(subject string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.sessions {
		if s.subject == subject {
			n++
		}
	}
	return n
}

// SignOutSubject ends every IdP session of the subject, as an administrator
// signing the user out at the IdP would, and sends each client that
// received tokens in a session a back-channel logout token with that
// session's sub and sid. It returns the delivery failures, if any; all
// attempts are also recorded in BackchannelResults.
func (p *Provider) SignOutSubject(subject string) error {
	var ended []endedSession
	p.mu.Lock()
	for _, s := range p.sessions {
		if s.subject == subject {
			ended = append(ended, p.endLocked(s))
		}
	}
	p.mu.Unlock()
	sort.Slice(ended, func(i, j int) bool { return ended[i].sid < ended[j].sid })
	return p.notify(ended)
}
