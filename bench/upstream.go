package main

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strconv"
)

// The upstream answers every proxy with canned bytes over kept-alive
// HTTP/1.1: GET /api/blob gets 64 KiB, anything else a small JSON body.
// It parses a request just enough to find where it ends, so that it and
// the load generator together fit on one CPU with room to spare, and the
// proxy under test, not the bench, sets the pace.

func startUpstream() (string, error) {
	small := []byte(`{"ok":true,"items":[1,2,3,4,5,6,7,8,9,10]}`)
	blob := make([]byte, blobSize)
	for i := range blob {
		blob[i] = 'a' + byte(i%26)
	}
	respond := func(body []byte) []byte {
		head := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		return append([]byte(head), body...)
	}
	smallResp, blobResp := respond(small), respond(blob)
	badResp := []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveUpstreamConn(c, smallResp, blobResp, badResp)
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

func serveUpstreamConn(c net.Conn, smallResp, blobResp, badResp []byte) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	for {
		path, keep, err := readRequest(br)
		if err != nil {
			if errors.Is(err, errMalformed) {
				_, _ = c.Write(badResp)
			}
			return
		}
		resp := smallResp
		if bytes.Equal(path, []byte(blobPath)) {
			resp = blobResp
		}
		if _, err := c.Write(resp); err != nil || !keep {
			return
		}
	}
}

// readRequest consumes one request (a body only by Content-Length) and
// returns its path and whether the connection stays open. Header lines may
// be longer than the buffer (a large identity's groups).
func readRequest(br *bufio.Reader) (path []byte, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return nil, false, err
	}
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || len(method) == 0 {
		return nil, false, errMalformed
	}
	target, _, _ = bytes.Cut(target, []byte("?"))
	path = append([]byte(nil), target...)
	keep = bytes.HasPrefix(proto, []byte("HTTP/1.1"))
	var length int64
	for {
		line, err = br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) { // the rest of a long line
			_, err = br.ReadSlice('\n')
		}
		if err != nil {
			return nil, false, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return nil, false, errMalformed
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return nil, false, errMalformed // proxies send GETs without bodies
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	if _, err := br.Discard(int(length)); err != nil {
		return nil, false, err
	}
	return path, keep, nil
}
