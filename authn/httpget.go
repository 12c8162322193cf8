package authn

import (
	"context"
	"io"
	"net/http"
)

// getBearer GETs rawURL with token as a Bearer credential and reads at
// most limit bytes of the answer, whatever its status: each caller
// interprets the status and body in its own way. header is added to the
// request (Accept defaults to application/json). A transport error is
// stripped of its URL, which callers must not repeat into logs.
func getBearer(ctx context.Context, client *http.Client, token, rawURL string, limit int64, header http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, redactURLError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, nil, err
	}
	return resp, body, nil
}
