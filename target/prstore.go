package target

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The persisted state of a device with APTPL set is a small text file,
// <StateDir>/pr/<device>:
//
//	scstd-pr 1
//	generation <decimal>
//	reservation <type, hex>           (absent when not reserved)
//	registrant <key hex> <isid hex> <flags> <target quoted> <initiator quoted>
//
// flags is a string of letters: "a" ALL_TG_PT, "h" reservation holder, "-"
// none. Text keeps it inspectable; names are Go-quoted so no byte of them
// can break the line structure.
const prMagic = "scstd-pr 1"

// maxPRFile bounds what loadPR reads: maxRegistrants lines of at most two
// quoted names each.
const maxPRFile = maxRegistrants * 1200

var errPRFile = errors.New("bad persistent reservation state")

func prPath(stateDir, device string) (string, error) {
	if device == "" || device == "." || device == ".." || strings.ContainsAny(device, "/\x00") {
		return "", fmt.Errorf("device name %q cannot name a state file", device)
	}
	return filepath.Join(stateDir, "pr", device), nil
}

// encodePR renders d in the file format.
func encodePR(d *prData) []byte {
	var b bytes.Buffer
	b.WriteString(prMagic + "\n")
	fmt.Fprintf(&b, "generation %d\n", d.gen)
	if d.typ != 0 {
		fmt.Fprintf(&b, "reservation %x\n", d.typ)
	}
	for _, r := range d.regs {
		flags := ""
		if r.allTgPt {
			flags += "a"
		}
		if r.holder {
			flags += "h"
		}
		if flags == "" {
			flags = "-"
		}
		fmt.Fprintf(&b, "registrant %x %x %s %s %s\n", r.key, r.isid, flags,
			strconv.Quote(r.target), strconv.Quote(r.name))
	}
	return b.Bytes()
}

// decodePR parses the file format. The result always satisfies the state
// invariants (valid type, at most one holder and only with a non-all-
// registrants reservation, nonzero keys), so a damaged or forged file
// cannot put the device into a state PROUT could not reach.
func decodePR(data []byte) (prData, error) {
	var d prData
	if len(data) > maxPRFile {
		return d, fmt.Errorf("%w: %d bytes", errPRFile, len(data))
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxPRFile)
	line := 0
	seenGen := false
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 {
			if text != prMagic {
				return d, fmt.Errorf("%w: header %q", errPRFile, text)
			}
			continue
		}
		verb, rest, _ := strings.Cut(text, " ")
		bad := func(why string) (prData, error) {
			return prData{}, fmt.Errorf("%w: line %d: %s", errPRFile, line, why)
		}
		switch verb {
		case "generation":
			if seenGen {
				return bad("second generation")
			}
			v, err := strconv.ParseUint(rest, 10, 32)
			if err != nil {
				return bad("generation")
			}
			d.gen, seenGen = uint32(v), true
		case "reservation":
			if d.typ != 0 {
				return bad("second reservation")
			}
			v, err := strconv.ParseUint(rest, 16, 8)
			if err != nil || !validPRType(byte(v)) {
				return bad("reservation type")
			}
			d.typ = byte(v)
		case "registrant":
			r, err := decodeRegistrant(rest)
			if err != nil {
				return bad(err.Error())
			}
			if len(d.regs) == maxRegistrants {
				return bad("too many registrants")
			}
			d.regs = append(d.regs, r)
		default:
			return bad("unknown record")
		}
	}
	if err := sc.Err(); err != nil {
		return prData{}, fmt.Errorf("%w: %w", errPRFile, err)
	}
	if line == 0 || !seenGen {
		return prData{}, fmt.Errorf("%w: incomplete", errPRFile)
	}
	holders := 0
	for _, r := range d.regs {
		if r.holder {
			holders++
		}
	}
	switch {
	case d.typ == 0 && holders != 0,
		d.typ != 0 && allRegistrantsType(d.typ) && (holders != 0 || len(d.regs) == 0),
		d.typ != 0 && !allRegistrantsType(d.typ) && holders != 1:
		return prData{}, fmt.Errorf("%w: reservation without a consistent holder", errPRFile)
	}
	d.aptpl = true
	return d, nil
}

func decodeRegistrant(s string) (registrant, error) {
	var r registrant
	f := strings.SplitN(s, " ", 4)
	if len(f) != 4 {
		return r, errors.New("registrant fields")
	}
	key, err := strconv.ParseUint(f[0], 16, 64)
	if err != nil || key == 0 {
		return r, errors.New("registrant key")
	}
	isid, err := strconv.ParseUint(f[1], 16, 64)
	if err != nil || isid > isidMask {
		return r, errors.New("registrant ISID")
	}
	r.key, r.isid = key, isid
	if f[2] != "-" {
		for _, ch := range f[2] {
			switch {
			case ch == 'a' && !r.allTgPt:
				r.allTgPt = true
			case ch == 'h' && !r.holder:
				r.holder = true
			default:
				return r, errors.New("registrant flags")
			}
		}
	}
	// The target, then the initiator, both quoted: the target's closing
	// quote is the first unescaped one.
	target, tail, err := cutQuoted(f[3])
	if err != nil || !strings.HasPrefix(tail, " ") {
		return r, errors.New("registrant target")
	}
	name, tail, err := cutQuoted(tail[1:])
	if err != nil || tail != "" || name == "" || len(name) > maxTransportIDName {
		return r, errors.New("registrant initiator")
	}
	r.target, r.name = target, name
	return r, nil
}

// cutQuoted unquotes the Go string literal at the start of s and returns
// the rest.
func cutQuoted(s string) (string, string, error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	v, err := strconv.Unquote(q)
	if err != nil {
		return "", "", err
	}
	return v, s[len(q):], nil
}

// loadPR reads the persisted state of device; ok is false when there is none.
func loadPR(stateDir, device string) (prData, bool, error) {
	path, err := prPath(stateDir, device)
	if err != nil {
		return prData{}, false, err
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return prData{}, false, nil
	}
	if err != nil {
		return prData{}, false, err
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxPRFile+1))
	if err != nil {
		return prData{}, false, fmt.Errorf("read %s: %w", path, err)
	}
	d, err := decodePR(buf)
	if err != nil {
		return prData{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return d, true, nil
}

// savePR makes d the persisted state of device, or removes the file when d
// asks for nothing to persist (APTPL off, or no registrations). The file is
// replaced atomically: written to a temporary file, synced, renamed over
// the old one, and the directory synced so the rename survives a crash.
func savePR(stateDir, device string, d *prData) error {
	path, err := prPath(stateDir, device)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if !d.aptpl || len(d.regs) == 0 {
		err := os.Remove(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err == nil {
			return syncDir(dir)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+device+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(encodePR(d)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
