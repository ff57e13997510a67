package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files and directories of a PKI directory (see the package documentation).
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
	CRLFile    = "crl.pem"
	IndexFile  = "index.json"
	IssuedDir  = "issued"
	PrivateDir = "private"
)

// Default validities.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 2 * 365 * 24 * time.Hour
	// backdate is subtracted from NotBefore so a party whose clock runs a little slow still accepts a
	// certificate issued just now.
	backdate = 5 * time.Minute
)

var (
	// ErrExists is returned by Init for a directory that already holds a CA.
	ErrExists = errors.New("pki: a CA already exists")
	// ErrRoleConflict is returned by Issue for a name already issued to another role.
	ErrRoleConflict = errors.New("pki: name already issued to another role")
	// ErrUnknownName is returned by Revoke for a name with no unrevoked certificate.
	ErrUnknownName = errors.New("pki: no valid certificate with this name")
)

// KeyType selects the algorithm of a new key.
type KeyType string

const (
	ECDSAP256 KeyType = "ecdsa-p256" // the default (design.md)
	Ed25519   KeyType = "ed25519"    // smaller and faster signatures; needs TLS peers that support it
)

// Config says where a PKI directory is and how it behaves. Zero values are documented per field.
type Config struct {
	Dir string // the PKI directory; required
	// Now is the clock used for validity windows and CRL dates; nil means time.Now.
	Now func() time.Time
	// CRLValidity is how far ahead of now a newly signed CRL's NextUpdate lies; zero means
	// DefaultCRLValidity (90 days).
	CRLValidity time.Duration
	// LockTimeout bounds the wait for LockFile, which every change to the index and the CRL holds; zero
	// means DefaultLockTimeout (30 s).
	LockTimeout time.Duration
}

func (c Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c Config) crlValidity() time.Duration {
	if c.CRLValidity > 0 {
		return c.CRLValidity
	}
	return DefaultCRLValidity
}

// CAOptions configures Init.
type CAOptions struct {
	Fleet    string        // the Organization of every certificate and part of the CA's name; "" means "waybill"
	Validity time.Duration // zero means DefaultCAValidity (10 years)
}

// IssueOptions configures Issue. The validity window is NotBefore..NotAfter; tests may ask for one that
// has already ended.
type IssueOptions struct {
	// NotBefore zero means now minus a few minutes (for slow clocks).
	NotBefore time.Time
	// NotAfter zero means NotBefore plus Validity.
	NotAfter time.Time
	// Validity zero means DefaultLeafValidity (2 years). Ignored when NotAfter is set.
	Validity time.Duration
	// Hosts are extra DNS names or IP addresses of a broker certificate; localhost, 127.0.0.1, ::1 and the
	// broker's name are always included. Refused for other roles.
	Hosts []string
	// KeyType zero means ECDSAP256.
	KeyType KeyType
}

// Entry is one issued certificate in the index.
type Entry struct {
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Serial    string    `json:"serial"` // lower-case hex
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Revoked reports whether the entry has been revoked.
func (e Entry) Revoked() bool { return !e.RevokedAt.IsZero() }

// index is index.json: every certificate ever issued, and the CRL number of the last CRL.
type index struct {
	CRLNumber int64   `json:"crl_number"`
	Entries   []Entry `json:"entries"`
}

// PKI is an open PKI directory. Processes and goroutines may change one directory at once: every
// read-modify-write of the index and the CRL holds LockFile.
type PKI struct {
	cfg    Config
	caCert *x509.Certificate
	caKey  crypto.Signer
}

// Init creates the fleet CA in cfg.Dir (created with mode 0700 if missing), with an empty CRL and an empty
// index. It refuses a directory that already holds a CA.
func Init(cfg Config, opts CAOptions) (*PKI, error) {
	if cfg.Dir == "" {
		return nil, errors.New("pki: no directory given")
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, CAKeyFile)); err == nil {
		return nil, fmt.Errorf("%w in %s", ErrExists, cfg.Dir)
	}
	for _, d := range []struct {
		path string
		perm os.FileMode
	}{{cfg.Dir, 0o700}, {filepath.Join(cfg.Dir, IssuedDir), 0o755}, {filepath.Join(cfg.Dir, PrivateDir), 0o700}} {
		if err := os.MkdirAll(d.path, d.perm); err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
	}
	p := &PKI{cfg: cfg}
	unlock, err := p.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(cfg.Dir, CAKeyFile)); err == nil { // again, under the lock
		return nil, fmt.Errorf("%w in %s", ErrExists, cfg.Dir)
	}
	fleet := opts.Fleet
	if fleet == "" {
		fleet = "waybill"
	}
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultCAValidity
	}
	key, err := newKey(ECDSAP256)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := cfg.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fleet + " fleet CA", Organization: []string{fleet}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // leaves only: no intermediate CA can be minted from a leaf
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := marshalKeyPEM(key)
	if err != nil {
		return nil, err
	}
	// The key first: a crash after it leaves no ca.crt without its key.
	if err := writeFileAtomic(filepath.Join(cfg.Dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(cfg.Dir, CACertFile), certPEM(der), 0o644); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	p.caCert, p.caKey = caCert, key
	idx := &index{Entries: []Entry{}}
	if err := p.writeCRL(idx); err != nil {
		return nil, err
	}
	if err := p.writeIndex(idx); err != nil {
		return nil, err
	}
	return p, nil
}

// Open opens an existing PKI directory, checking the CA key's permissions.
func Open(cfg Config) (*PKI, error) {
	if cfg.Dir == "" {
		return nil, errors.New("pki: no directory given")
	}
	caCert, err := LoadCertificate(filepath.Join(cfg.Dir, CACertFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pki: %s holds no fleet CA (run `waybill pki init` first): %w", cfg.Dir, err)
		}
		return nil, err
	}
	caKey, err := LoadPrivateKey(filepath.Join(cfg.Dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(caCert.PublicKey, caKey.Public()) {
		return nil, fmt.Errorf("pki: %s does not match %s", CAKeyFile, CACertFile)
	}
	return &PKI{cfg: cfg, caCert: caCert, caKey: caKey}, nil
}

// Dir returns the PKI directory.
func (p *PKI) Dir() string { return p.cfg.Dir }

// CACert returns the fleet CA certificate.
func (p *PKI) CACert() *x509.Certificate { return p.caCert }

// CAPath returns the path of ca.crt.
func (p *PKI) CAPath() string { return filepath.Join(p.cfg.Dir, CACertFile) }

// CRLPath returns the path of crl.pem.
func (p *PKI) CRLPath() string { return filepath.Join(p.cfg.Dir, CRLFile) }

// CertPath returns the path of name's certificate.
func (p *PKI) CertPath(name string) string { return filepath.Join(p.cfg.Dir, IssuedDir, name+".crt") }

// KeyPath returns the path of name's private key.
func (p *PKI) KeyPath(name string) string { return filepath.Join(p.cfg.Dir, PrivateDir, name+".key") }

// Issue creates a key and a certificate for name with role, writes them to issued/NAME.crt and
// private/NAME.key (0600) and records them in the index. Issuing a name again with the same role renews
// it (the older certificate stays valid until it expires or is revoked); a name issued to another role is
// refused.
func (p *PKI) Issue(role Role, name string, opts IssueOptions) (Entry, error) {
	entries, err := p.IssueMany(role, []string{name}, opts)
	if err != nil {
		return Entry{}, err
	}
	return entries[0], nil
}

// issueChunk is how many certificates IssueMany records in the index per write: the index is rewritten
// whole, so one write per certificate made issuing a fleet O(N²) (34 ms per certificate at 10,000).
const issueChunk = 512

// IssueMany issues a certificate for each name, as Issue does, reading the index once and writing it once
// per issueChunk names, so a fleet of N costs O(N) rather than N calls to Issue's O(N) each.
//
// The index is written (and synced) before the files it describes, and the files of a chunk are made
// durable together: a certificate that exists is always in the index (so it can be revoked). An
// interrupted run or a power cut leaves at most one chunk of entries whose files are missing or empty;
// their serials were never seen by anyone, and issuing those names again renews them.
func (p *PKI) IssueMany(role Role, names []string, opts IssueOptions) ([]Entry, error) {
	if !role.Valid() {
		return nil, fmt.Errorf("pki: unknown role %q (want truck, dispatch or broker)", role)
	}
	if role != RoleBroker && len(opts.Hosts) > 0 {
		return nil, fmt.Errorf("pki: host names are for broker certificates, not %s", role)
	}
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		if err := ValidateName(name); err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("pki: %q is listed twice", name)
		}
		seen[name] = true
	}
	idx, err := p.readIndex() // to refuse a conflict before any key is made; checked again under the lock
	if err != nil {
		return nil, err
	}
	if err := roleConflict(idx, seen, role); err != nil {
		return nil, err
	}
	notBefore := opts.NotBefore
	if notBefore.IsZero() {
		notBefore = p.cfg.now().Add(-backdate)
	}
	notAfter := opts.NotAfter
	if notAfter.IsZero() {
		v := opts.Validity
		if v == 0 {
			v = DefaultLeafValidity
		}
		notAfter = notBefore.Add(v)
	}
	if !notAfter.After(notBefore) {
		return nil, errors.New("pki: validity window ends before it starts")
	}
	if notAfter.After(p.caCert.NotAfter) {
		notAfter = p.caCert.NotAfter // a leaf cannot outlive its CA
	}
	if err := os.MkdirAll(filepath.Join(p.cfg.Dir, PrivateDir), 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(p.cfg.Dir, IssuedDir), 0o755); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	out := make([]Entry, 0, len(names))
	for len(names) > 0 {
		chunk := names[:min(issueChunk, len(names))]
		names = names[len(chunk):]
		made := make([]issued, 0, len(chunk))
		for _, name := range chunk {
			c, err := p.makeLeaf(role, name, notBefore, notAfter, opts)
			if err != nil {
				return out, err
			}
			made = append(made, c)
		}
		// Under the lock, on the index as it is now: another writer may have changed it meanwhile.
		err := p.update(func(idx *index) error {
			if err := roleConflict(idx, seen, role); err != nil {
				return err
			}
			for _, c := range made {
				idx.Entries = append(idx.Entries, c.entry)
			}
			return p.writeIndex(idx)
		})
		if err != nil {
			return out, err
		}
		for _, c := range made {
			if err := writeFileRenamed(p.KeyPath(c.entry.Name), c.keyPEM, 0o600, false); err != nil {
				return out, fmt.Errorf("pki: %w", err)
			}
			if err := writeFileRenamed(p.CertPath(c.entry.Name), c.certPEM, 0o644, false); err != nil {
				return out, fmt.Errorf("pki: %w", err)
			}
		}
		if err := syncFS(p.cfg.Dir); err != nil { // one sync per chunk instead of four per certificate
			return out, fmt.Errorf("pki: %w", err)
		}
		for _, c := range made {
			out = append(out, c.entry)
		}
	}
	return out, nil
}

// roleConflict refuses names (the keys of names) that idx holds with another role than role.
func roleConflict(idx *index, names map[string]bool, role Role) error {
	for _, e := range idx.Entries {
		if names[e.Name] && e.Role != role {
			return fmt.Errorf("%w: %q is a %s; choose another name", ErrRoleConflict, e.Name, e.Role)
		}
	}
	return nil
}

// update runs change on the index under LockFile; change writes what it changed.
func (p *PKI) update(change func(*index) error) error {
	unlock, err := p.lock()
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := p.readIndex()
	if err != nil {
		return err
	}
	return change(idx)
}

// issued is a certificate made in memory, not yet on disk.
type issued struct {
	entry           Entry
	keyPEM, certPEM []byte
}

// makeLeaf creates name's key and certificate.
func (p *PKI) makeLeaf(role Role, name string, notBefore, notAfter time.Time, opts IssueOptions) (issued, error) {
	kt := opts.KeyType
	if kt == "" {
		kt = ECDSAP256
	}
	key, err := newKey(kt)
	if err != nil {
		return issued{}, err
	}
	serial, err := newSerial()
	if err != nil {
		return issued{}, err
	}
	tmpl := p.leafTemplate(serial, name, role, notBefore, notAfter)
	switch role {
	case RoleBroker:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		hosts := append([]string{name, "localhost", "127.0.0.1", "::1"}, opts.Hosts...)
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
					tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
				}
			} else if h = strings.ToLower(strings.TrimSpace(h)); h != "" && !slices.Contains(tmpl.DNSNames, h) {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	default:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, key.Public(), p.caKey)
	if err != nil {
		return issued{}, fmt.Errorf("pki: issue %q: %w", name, err)
	}
	keyPEM, err := marshalKeyPEM(key)
	if err != nil {
		return issued{}, err
	}
	return issued{
		entry:  Entry{Name: name, Role: role, Serial: serial.Text(16), NotBefore: notBefore.UTC(), NotAfter: notAfter.UTC()},
		keyPEM: keyPEM, certPEM: certPEM(der),
	}, nil
}

// leafTemplate is a leaf certificate of the fleet for name with role (the OU), a signing key and the CA's
// organisation; the caller sets the extended key usage.
func (p *PKI) leafTemplate(serial *big.Int, name string, role Role, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         name,
			OrganizationalUnit: []string{string(role)},
			Organization:       p.caCert.Subject.Organization,
		},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
}

// Revoke revokes every unrevoked certificate issued to name and rewrites the CRL. Brokers pick the new
// CRL up on reload (Mosquitto: SIGHUP); an already-connected client keeps its session until it reconnects.
func (p *PKI) Revoke(name string) ([]Entry, error) {
	var revoked []Entry
	err := p.update(func(idx *index) error {
		now := p.cfg.now().UTC()
		for i, e := range idx.Entries {
			if e.Name == name && !e.Revoked() {
				idx.Entries[i].RevokedAt = now
				revoked = append(revoked, idx.Entries[i])
			}
		}
		if len(revoked) == 0 {
			return fmt.Errorf("%w: %q", ErrUnknownName, name)
		}
		// CRL first: if writing the index fails afterwards, the certificate is still refused by brokers.
		if err := p.writeCRL(idx); err != nil {
			return err
		}
		return p.writeIndex(idx)
	})
	if err != nil {
		return nil, err
	}
	return revoked, nil
}

// RefreshCRL signs the CRL again with a NextUpdate of now plus Config.CRLValidity. Run it well before
// CheckCRL starts warning (a monthly job is plenty with the defaults) and reload the broker.
func (p *PKI) RefreshCRL() error {
	return p.update(func(idx *index) error {
		if err := p.writeCRL(idx); err != nil {
			return err
		}
		return p.writeIndex(idx) // the CRL number moved
	})
}

// List returns every certificate ever issued, in issue order.
func (p *PKI) List() ([]Entry, error) {
	idx, err := p.readIndex()
	if err != nil {
		return nil, err
	}
	return idx.Entries, nil
}

// Names returns the distinct names holding an unrevoked, unexpired certificate of role at now, sorted.
// brokerconf uses it for the Mosquitto ACL's dispatch users.
func (p *PKI) Names(role Role) ([]string, error) {
	idx, err := p.readIndex()
	if err != nil {
		return nil, err
	}
	now := p.cfg.now()
	var names []string
	for _, e := range idx.Entries {
		if e.Role == role && !e.Revoked() && now.Before(e.NotAfter) && !slices.Contains(names, e.Name) {
			names = append(names, e.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// CRL reads and returns the current CRL.
func (p *PKI) CRL() (*x509.RevocationList, error) { return LoadCRL(p.CRLPath()) }

func (p *PKI) writeCRL(idx *index) error {
	idx.CRLNumber++
	now := p.cfg.now()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(idx.CRLNumber),
		ThisUpdate: now.Add(-backdate),
		NextUpdate: now.Add(p.cfg.crlValidity()),
	}
	for _, e := range idx.Entries {
		if !e.Revoked() {
			continue
		}
		serial, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok {
			return fmt.Errorf("pki: index entry %q has a bad serial %q", e.Name, e.Serial)
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: serial, RevocationTime: e.RevokedAt})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.caCert, p.caKey)
	if err != nil {
		return fmt.Errorf("pki: sign CRL: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	if err := writeFileAtomic(p.CRLPath(), data, 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

func (p *PKI) readIndex() (*index, error) {
	path := filepath.Join(p.cfg.Dir, IndexFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &index{Entries: []Entry{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	var idx index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return &idx, nil
}

func (p *PKI) writeIndex(idx *index) error {
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(p.cfg.Dir, IndexFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

func newKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case Ed25519:
		_, key, err := ed25519.GenerateKey(rand.Reader)
		return key, err
	default:
		return nil, fmt.Errorf("pki: unknown key type %q (want %s or %s)", kt, ECDSAP256, Ed25519)
	}
}

// newSerial returns a random positive 127-bit serial, so serials never collide without a counter file.
func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}
