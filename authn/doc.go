// Package authn proves who a person is: the sign-in page, the
// authorization-code flow with PKCE against GitHub, GitLab and OpenID
// Connect providers, the callbacks that turn a provider's answer into an
// identity and a session, sign-out (also at the provider, with OpenID
// Connect RP-Initiated Logout), and revalidation of live sessions with
// their provider. Who may pass is decided by package filters; what
// machines use (device flow, tokens, back-channel logout) lives in
// package oauthserver.
package authn
