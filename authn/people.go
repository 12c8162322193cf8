package authn

import (
	"context"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
)

// People answers what the machine-facing endpoints (package oauthserver)
// must know about a signed-in person, from the sign-in side.
type People struct {
	Login       *Login
	Revalidator *Revalidator
}

// Revalidate re-checks s with its provider when due (Revalidator.Check).
func (p People) Revalidate(ctx context.Context, s *session.Session) (*session.Session, error) {
	return p.Revalidator.Check(ctx, s)
}

// MayApprove reports whether id passes its provider's filters today.
func (p People) MayApprove(id identity.Identity) bool {
	prov, ok := p.Login.Provider(id.Provider)
	return ok && prov.Rule().Check(id).Allowed
}

// SignInURL is the sign-in page, continuing to rd.
func (p People) SignInURL(rd string) string { return p.Login.SignInURL(rd) }
