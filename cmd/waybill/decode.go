package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// maxDecodeInput bounds what decode reads: far above any message a verifier accepts.
const maxDecodeInput = 16 << 20

func runDecode(ctx context.Context, s streams, args []string) error {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	fs.SetOutput(s.err)
	caFile := fs.String("ca", "", "fleet CA certificate (PEM): also verify the message")
	certsDir := fs.String("certs", "", "directory of fleet certificates (*.crt, *.pem, and its issued/ subdirectory), for messages that do not carry their signer's certificate (telemetry)")
	hexIn := fs.Bool("hex", false, "the input is hex (whitespace ignored), not raw bytes")
	topic := fs.String("topic", "", "the topic the message came on (default: derived from the message)")
	prefix := fs.String("prefix", sdk.DefaultPrefix, "topic prefix, for deriving the topic")
	at := fs.String("now", "", "verify as of this RFC 3339 time instead of now")
	fs.Usage = func() {
		fmt.Fprintln(s.err, "Usage: waybill decode [--ca CA.crt] [--certs DIR] [--hex] [--topic T] FILE|-")
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, "Shows a Waybill message (an MQTT payload) as indented JSON: the envelope fields and the decoded")
		fmt.Fprintln(s.err, "body. With --ca it also verifies signature, certificate, role, addressing and age, and exits 1")
		fmt.Fprintln(s.err, "if the message would be refused. FILE - reads standard input.")
		fmt.Fprintln(s.err)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError{"want exactly one FILE (or - for standard input)"}
	}
	if *certsDir != "" && *caFile == "" {
		return usageError{"--certs needs --ca"}
	}
	now := time.Now
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usageError{fmt.Sprintf("--now: %v", err)}
		}
		now = func() time.Time { return t }
	}
	topics := sdk.Topics{Prefix: *prefix}
	if err := topics.Validate(); err != nil {
		return usageError{err.Error()}
	}

	payload, err := readInput(s.in, fs.Arg(0), *hexIn)
	if err != nil {
		return err
	}
	env, err := sdk.DecodeEnvelope(payload)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	out := decodeOutput{Size: len(payload), Envelope: describeEnvelope(env)}
	body, err := decodeBody(env)
	if err != nil {
		out.BodyError = err.Error()
	} else if out.Body, err = durationsInSeconds(body); err != nil {
		return err
	}

	var verr error
	if *caFile != "" {
		out.Verification, verr = verifyForDecode(ctx, s, env, body, payload, verifyOptions{
			caFile: *caFile, certsDir: *certsDir, topic: *topic, topics: topics, now: now})
	}
	enc := json.NewEncoder(s.out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return err
	}
	if out.BodyError != "" {
		return fmt.Errorf("the body does not decode: %s", out.BodyError)
	}
	return verr
}

type decodeOutput struct {
	Size         int           `json:"size"`
	Envelope     envelopeJSON  `json:"envelope"`
	Body         any           `json:"body,omitempty"`
	BodyError    string        `json:"body_error,omitempty"`
	Verification *verification `json:"verification,omitempty"`
}

type envelopeJSON struct {
	Version     uint8     `json:"version"`
	Type        string    `json:"type"`
	Sender      string    `json:"sender"`
	ID          string    `json:"id"`
	Seq         uint64    `json:"seq"`
	Created     time.Time `json:"created"`
	Alg         string    `json:"alg"`
	KeyID       string    `json:"key_id"`
	Certificate *certJSON `json:"certificate,omitempty"`
	CertError   string    `json:"certificate_error,omitempty"`
	BodySize    int       `json:"body_size"`
	BodySHA256  string    `json:"body_sha256"` // for an order: the OrderHash events carry
	Signature   string    `json:"signature"`
}

type certJSON struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

type verification struct {
	OK     bool        `json:"ok"`
	Topic  string      `json:"topic"`
	Reason string      `json:"reason,omitempty"`
	Error  string      `json:"error,omitempty"`
	Signer *signerJSON `json:"signer,omitempty"`
}

// signerJSON is who signed a verified message, for people: the identity from its certificate and the key id
// the envelope names.
type signerJSON struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	KeyID string `json:"key_id"`
}

// durationKeys are the duration fields of message bodies (Go time.Duration, nanoseconds in encoding/json),
// by the JSON object that holds them: decode shows them as seconds, with the unit in the key.
var durationKeys = map[string]bool{"fix_age": true, "oldest_age": true, "clock_skew": true, "duration": true, "idle": true}

// durationsInSeconds turns body into JSON with every duration field renamed KEY_s and given in seconds:
// "fix_age": 2500000000 becomes "fix_age_s": 2.5.
func durationsInSeconds(body any) (any, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if n, ok := val.(json.Number); ok && durationKeys[k] {
					if ns, err := n.Int64(); err == nil {
						delete(x, k)
						x[k+"_s"] = time.Duration(ns).Seconds()
						continue
					}
				}
				walk(val)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return v, nil
}

func describeEnvelope(env *sdk.Envelope) envelopeJSON {
	m := sdk.Message{Envelope: *env}
	h := m.BodyHash()
	e := envelopeJSON{
		Version: env.Version, Type: env.Type.String(), Sender: env.Sender, ID: env.ID.String(), Seq: env.Seq,
		Created: env.Created, Alg: env.Alg.String(), KeyID: hex.EncodeToString(env.KeyID[:]),
		BodySize: len(env.Body), BodySHA256: hex.EncodeToString(h[:]), Signature: hex.EncodeToString(env.Sig),
	}
	if len(env.Cert) > 0 {
		c, err := x509.ParseCertificate(env.Cert)
		if err != nil {
			e.CertError = err.Error()
		} else {
			e.Certificate = describeCert(c)
		}
	}
	return e
}

func describeCert(c *x509.Certificate) *certJSON {
	j := &certJSON{Name: c.Subject.CommonName, Subject: c.Subject.String(), Issuer: c.Issuer.String(),
		Serial: c.SerialNumber.String(), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()}
	if len(c.Subject.OrganizationalUnit) == 1 {
		j.Role = c.Subject.OrganizationalUnit[0]
	}
	return j
}

func decodeBody(env *sdk.Envelope) (any, error) {
	switch env.Type {
	case sdk.MsgOrder:
		return sdk.UnmarshalOrder(env.Body)
	case sdk.MsgEvent:
		return sdk.UnmarshalEvent(env.Body)
	case sdk.MsgStatus:
		return sdk.UnmarshalStatus(env.Body)
	case sdk.MsgTelemetry:
		return sdk.UnmarshalTelemetry(env.Body)
	case sdk.MsgReceipt:
		return sdk.UnmarshalReceipt(env.Body)
	}
	return nil, fmt.Errorf("unknown message type %s", env.Type)
}

type verifyOptions struct {
	caFile, certsDir, topic string
	topics                  sdk.Topics
	now                     func() time.Time
}

func verifyForDecode(ctx context.Context, s streams, env *sdk.Envelope, body any, payload []byte,
	o verifyOptions) (*verification, error) {
	cas, err := readCertFile(o.caFile)
	if err != nil {
		return nil, err
	}
	v, err := sdk.NewVerifier(sdk.VerifierConfig{CA: cas, Topics: o.topics, Clock: o.now})
	if err != nil {
		return nil, err
	}
	if o.certsDir != "" {
		certs, err := readCertDir(o.certsDir)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			if c.IsCA {
				continue
			}
			// Broker certificates (serverAuth) and expired ones cannot sign messages: skip them.
			_ = v.AddCertificate(c)
		}
	}
	topic := o.topic
	if topic == "" {
		topic, err = deriveTopic(o.topics, env, body)
		if err != nil {
			res := &verification{Error: fmt.Sprintf("cannot tell the topic (%v): give --topic", err)}
			return res, errors.New(res.Error)
		}
	}
	res := &verification{Topic: topic}
	m, err := v.Verify(ctx, topic, payload)
	if err != nil {
		var rej *sdk.RejectError
		if errors.As(err, &rej) {
			res.Reason = rej.Reason.String()
		}
		res.Error = err.Error()
		fmt.Fprintln(s.err, "waybill decode: the message would be refused:", err)
		return res, fmt.Errorf("verification failed: %s", res.Reason)
	}
	res.OK, res.Signer = true, &signerJSON{Name: m.Signer.Name, Role: string(m.Signer.Role),
		KeyID: hex.EncodeToString(env.KeyID[:])}
	return res, nil
}

// deriveTopic gives the topic a message was meant for: an order's and a receipt's from its body, a
// dispatch status's from its sender, the others' from the sender (trucks publish only on their own topics).
func deriveTopic(t sdk.Topics, env *sdk.Envelope, body any) (string, error) {
	switch env.Type {
	case sdk.MsgOrder:
		o, ok := body.(*sdk.Order)
		if !ok || o == nil {
			return "", errors.New("the order body does not decode")
		}
		return t.Order(o.Truck, o.ID)
	case sdk.MsgEvent:
		return t.Events(env.Sender)
	case sdk.MsgStatus:
		if c, err := x509.ParseCertificate(env.Cert); err == nil {
			if id, err := pki.IdentityOf(c); err == nil && id.Role == pki.RoleDispatch {
				return t.DispatchStatus(env.Sender) // a dispatch process's status
			}
		}
		return t.Status(env.Sender)
	case sdk.MsgTelemetry:
		return t.Telemetry(env.Sender)
	case sdk.MsgReceipt:
		r, ok := body.(*sdk.Receipt)
		if !ok || r == nil {
			return "", errors.New("the receipt body does not decode")
		}
		return t.Receipts(r.Truck)
	}
	return "", fmt.Errorf("unknown message type %s", env.Type)
}

func readInput(stdin io.Reader, name string, hexIn bool) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxDecodeInput+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDecodeInput {
		return nil, fmt.Errorf("%s: over %d bytes: not a Waybill message", name, maxDecodeInput)
	}
	if hexIn {
		clean := strings.Join(strings.Fields(string(b)), "")
		clean = strings.TrimPrefix(strings.TrimPrefix(clean, "0x"), "0X")
		if b, err = hex.DecodeString(clean); err != nil {
			return nil, fmt.Errorf("%s: not hex: %w", name, err)
		}
	}
	return b, nil
}

// readCertFile reads every certificate in a PEM file.
func readCertFile(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return certs, nil
}

// readCertDir reads the certificates of *.crt and *.pem files in dir and in dir/issued (a PKI directory).
func readCertDir(dir string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	found := false
	for _, d := range []string{dir, filepath.Join(dir, "issued")} {
		entries, err := os.ReadDir(d)
		if errors.Is(err, os.ErrNotExist) && d != dir {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			ext := filepath.Ext(e.Name())
			if e.IsDir() || (ext != ".crt" && ext != ".pem") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				return nil, err
			}
			if !bytes.Contains(b, []byte("CERTIFICATE")) {
				continue // a key or a CRL
			}
			cs, err := readCertFile(filepath.Join(d, e.Name()))
			if err != nil {
				return nil, err
			}
			certs = append(certs, cs...)
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("%s: no certificates (*.crt, *.pem) in it or in its issued/ directory", dir)
	}
	return certs, nil
}
