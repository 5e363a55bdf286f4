package target

// matchPattern matches an initiator name against a names-file pattern
// (spec §1.11): DOS-style wildcards, case-insensitive, '*' any run of
// characters, '?' exactly one character, and a leading '!' inverts the result
// of matching the rest of the pattern.
func matchPattern(pattern, name string) bool {
	if len(pattern) > 0 && pattern[0] == '!' {
		return !wildMatch(pattern[1:], name)
	}
	return wildMatch(pattern, name)
}

// wildMatch is the iterative '*' backtracking matcher: O(len(p)*len(s)) at
// worst, no recursion, no allocation.
func wildMatch(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && (p[pi] == '?' || lower(p[pi]) == lower(s[si])):
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func lower(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}
