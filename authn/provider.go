package authn

import (
	"context"
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
)

// Provider is one way to sign in (an OIDC provider, GitHub, GitLab).
type Provider interface {
	// Name is the provider's key: it names its callback path and start URL.
	Name() string
	// DisplayName labels its button.
	DisplayName() string
	// AuthCodeURL returns where to send the browser to begin st.
	AuthCodeURL(ctx context.Context, st *loginState) (string, error)
	// Finish completes the flow from the callback request.
	Finish(ctx context.Context, r *http.Request, st *loginState) (identity.Identity, *session.ProviderToken, error)
	// Revalidate reads the identity again with the session's provider
	// token, refreshing it where possible. ErrRevoked means the provider
	// refused the token or no longer knows the user.
	Revalidate(ctx context.Context, tok *session.ProviderToken) (identity.Identity, *session.ProviderToken, error)
	// Rule is the provider's filter, the global lists included.
	Rule() filters.Rule
	// Ready reports whether the provider can be used (discovery done).
	Ready(ctx context.Context) error
}

// LoginError is a sign-in failure with a message fit for the person
// signing in. Err holds the detail for the log, never shown.
type LoginError struct {
	Status  int
	Title   string
	Message string
	Err     error
}

func (e *LoginError) Error() string {
	if e.Err != nil {
		return e.Title + ": " + e.Err.Error()
	}
	return e.Title
}

func (e *LoginError) Unwrap() error { return e.Err }

// providerUnavailable wraps a failure to reach the provider.
func providerUnavailable(err error) error {
	return &LoginError{Status: http.StatusBadGateway, Title: "Sign-in provider unavailable",
		Message: "The sign-in provider could not be reached or gave an unexpected answer. Please try again in a moment.", Err: err}
}

// signInFailed wraps a sign-in the provider's answer did not support.
func signInFailed(err error) error {
	return &LoginError{Status: http.StatusBadRequest, Title: "Sign-in failed",
		Message: "The answer from the sign-in provider could not be verified. Please start again.", Err: err}
}

func asLoginError(err error) *LoginError {
	var le *LoginError
	if errors.As(err, &le) {
		return le
	}
	return providerUnavailable(err).(*LoginError)
}
