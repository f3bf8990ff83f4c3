#!/usr/bin/env python3
"""Writes tests/data/detect_corpus.tsv: the labelled corpus for the detectors.

Each line: KIND <tab> EXPECTED <tab> TEXT
  KIND      valid (identifiers with correct check digits), near (near misses:
            a wrong check digit, a prefix never issued, a malformed shape) or
            plain (ordinary text).
  EXPECTED  the detector classes the line holds, comma-separated, or "-".

The check digits are computed here, in Python, independently of the C
validators under test. Run it again to regenerate (the seed is fixed):
  python3 tests/data/gen_detect_corpus.py > tests/data/detect_corpus.tsv
"""
import random, string

R = random.Random(20261122)

def luhn_digit(body):
    s = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch)
        if i % 2 == 0:  # doubled: positions 2, 4, ... counted from the check digit
            v = v * 2
            v = v - 9 if v > 9 else v
        s += v
    return str((10 - s % 10) % 10)

def luhn_ok(num):
    return luhn_digit(num[:-1]) == num[-1]

VD = [[0,1,2,3,4,5,6,7,8,9],[1,2,3,4,0,6,7,8,9,5],[2,3,4,0,1,7,8,9,5,6],[3,4,0,1,2,8,9,5,6,7],
      [4,0,1,2,3,9,5,6,7,8],[5,9,8,7,6,0,4,3,2,1],[6,5,9,8,7,1,0,4,3,2],[7,6,5,9,8,2,1,0,4,3],
      [8,7,6,5,9,3,2,1,0,4],[9,8,7,6,5,4,3,2,1,0]]
VP = [[0,1,2,3,4,5,6,7,8,9],[1,5,7,6,2,8,3,0,9,4],[5,8,0,3,7,9,6,1,4,2],[8,9,1,6,0,4,3,5,2,7],
      [9,4,5,3,1,2,6,8,7,0],[4,2,8,6,5,7,3,9,0,1],[2,7,9,3,8,0,6,4,1,5],[7,0,4,6,9,1,3,2,5,8]]
VINV = [0,4,3,2,1,5,6,7,8,9]

def verhoeff_digit(body):
    c = 0
    for i, ch in enumerate(reversed(body)):
        c = VD[c][VP[(i + 1) % 8][int(ch)]]
    return str(VINV[c])

def verhoeff_ok(num):
    c = 0
    for i, ch in enumerate(reversed(num)):
        c = VD[c][VP[i % 8][int(ch)]]
    return c == 0

def mynum_digit(body):
    q = [6,5,4,3,2,7,6,5,4,3,2]
    r = sum(int(a) * b for a, b in zip(body, q)) % 11
    return '0' if r <= 1 else str(11 - r)

def mynum_ok(num):
    return len(num) == 12 and num.isdigit() and mynum_digit(num[:11]) == num[11]

def aadhaar_ok(num):
    return len(num) == 12 and num.isdigit() and num[0] >= '2' and verhoeff_ok(num)

def to_mod97(s):
    return int(''.join(str(int(c, 36)) for c in s)) % 97

IBAN_BBAN = {'DE': 18, 'FR': 23, 'GB': 18, 'ES': 20, 'IT': 23, 'NL': 14, 'BE': 12, 'CH': 17, 'AT': 16, 'PL': 24, 'SE': 20, 'IE': 18}

def iban(cc):
    n = IBAN_BBAN[cc]
    if cc in ('GB', 'NL', 'IE'):
        bban = ''.join(R.choice(string.ascii_uppercase) for _ in range(4)) + ''.join(R.choice(string.digits) for _ in range(n - 4))
    elif cc == 'IT':
        bban = R.choice(string.ascii_uppercase) + ''.join(R.choice(string.digits) for _ in range(n - 1))
    else:
        bban = ''.join(R.choice(string.digits) for _ in range(n))
    check = 98 - to_mod97(bban + cc + '00')
    return cc + '%02d' % check + bban

def mod11_10_digit(body):
    p = 10
    for ch in body:
        s = (int(ch) + p) % 10
        s = 10 if s == 0 else s
        p = (2 * s) % 11
    c = 11 - p
    return '0' if c == 10 else str(c)

def de_tax_id():
    while True:
        digits = R.sample('0123456789', 9)
        if digits[0] == '0':
            continue
        dup = R.choice(digits)
        body = digits[:]
        body.insert(R.randrange(1, 10), dup)
        body = ''.join(body)
        if body[0] == '0' or any(body[i] == body[i+1] == body[i+2] for i in range(8)):
            continue
        return body + mod11_10_digit(body)

def nir():
    sex = R.choice('12')
    yy = '%02d' % R.randrange(0, 100)
    mm = '%02d' % R.randrange(1, 13)
    dep = R.choice(['75', '69', '13', '2A', '2B', '33', '59', '06'])
    com = '%03d' % R.randrange(1, 990)
    order = '%03d' % R.randrange(1, 999)
    body = sex + yy + mm + dep + com + order
    num = int(body.replace('2A', '19').replace('2B', '18'))
    return body + '%02d' % (97 - num % 97)

def ssn():
    while True:
        a = R.randrange(1, 900)
        if a != 666:
            return '%03d%02d%04d' % (a, R.randrange(1, 100), R.randrange(1, 10000))

def nino():
    first = [c for c in string.ascii_uppercase if c not in 'DFIQUV']
    second = [c for c in string.ascii_uppercase if c not in 'DFIOQUV']
    while True:
        p = R.choice(first) + R.choice(second)
        if p not in ('BG', 'GB', 'KN', 'NK', 'NT', 'TN', 'ZZ'):
            return p + ''.join(R.choice(string.digits) for _ in range(6)) + R.choice('ABCD')

def weighted(d, w):
    return sum(int(a) * b for a, b in zip(d, w))

def vat(cc):
    while True:
        if cc == 'DE':
            b = str(R.randrange(1, 10)) + ''.join(R.choice(string.digits) for _ in range(7))
            return 'DE' + b + mod11_10_digit(b)
        if cc == 'FR':
            siren = '%09d' % R.randrange(100000000, 999999999)
            return 'FR%02d' % ((12 + 3 * (int(siren) % 97)) % 97) + siren
        if cc == 'IT':
            b = ''.join(R.choice(string.digits) for _ in range(10))
            return 'IT' + b + luhn_digit(b)
        if cc == 'BE':
            b = '0' + ''.join(R.choice(string.digits) for _ in range(7))
            return 'BE' + b + '%02d' % (97 - int(b) % 97)
        if cc == 'NL':
            b = ''.join(R.choice(string.digits) for _ in range(8))
            c = weighted(b, [9,8,7,6,5,4,3,2]) % 11
            if c == 10:
                continue
            return 'NL' + b + str(c) + 'B%02d' % R.randrange(1, 100)
        if cc == 'AT':
            b = ''.join(R.choice(string.digits) for _ in range(7))
            r = 0
            for i, ch in enumerate(b):
                v = int(ch)
                if i % 2 == 1:
                    v = v * 2
                    v = v - 9 if v > 9 else v
                r += v
            return 'ATU' + b + str((10 - (r + 4) % 10) % 10)
        if cc == 'PL':
            b = ''.join(R.choice(string.digits) for _ in range(9))
            c = weighted(b, [6,5,7,2,3,4,5,6,7]) % 11
            if c == 10:
                continue
            return 'PL' + b + str(c)
        if cc == 'DK':
            b = str(R.randrange(1, 10)) + ''.join(R.choice(string.digits) for _ in range(6))
            for last in range(10):
                if weighted(b + str(last), [2,7,6,5,4,3,2,1]) % 11 == 0:
                    return 'DK' + b + str(last)
            continue
        if cc == 'FI':
            b = ''.join(R.choice(string.digits) for _ in range(7))
            r = weighted(b, [7,9,10,5,8,4,2]) % 11
            if r == 1:
                continue
            return 'FI' + b + str(0 if r == 0 else 11 - r)
        if cc == 'SE':
            b = ''.join(R.choice(string.digits) for _ in range(9))
            return 'SE' + b + luhn_digit(b) + '01'
        if cc == 'PT':
            b = str(R.randrange(1, 10)) + ''.join(R.choice(string.digits) for _ in range(7))
            r = 11 - weighted(b, [9,8,7,6,5,4,3,2]) % 11
            return 'PT' + b + str(0 if r >= 10 else r)
        if cc == 'LU':
            b = '%06d' % R.randrange(100000, 999999)
            return 'LU' + b + '%02d' % (int(b) % 89)

def card(kind):
    if kind == 'visa':
        body = '4' + ''.join(R.choice(string.digits) for _ in range(14))
    elif kind == 'mc':
        body = str(R.randrange(51, 56)) + ''.join(R.choice(string.digits) for _ in range(13))
    else:
        body = R.choice(['34', '37']) + ''.join(R.choice(string.digits) for _ in range(12))
    return body + luhn_digit(body)

def group(s, sizes, sep=' '):
    out, i = [], 0
    for n in sizes:
        out.append(s[i:i+n]); i += n
    return sep.join(out)

def wrong_last(num, ok):
    """The number with its last digit changed so that ok() fails."""
    for d in R.sample('0123456789', 10):
        cand = num[:-1] + d
        if cand != num and not ok(cand):
            return cand
    raise SystemExit('no near miss for ' + num)

NUMERIC12 = lambda n: aadhaar_ok(n) or mynum_ok(n)

lines = []
def add(kind, expected, text):
    assert '\t' not in text and '\n' not in text
    lines.append('%s\t%s\t%s' % (kind, expected, text))

names = ['Anna', 'Ravi', 'Yuki', 'Chloe', 'Tom', 'Lena', 'Marco', 'Sofia', 'Kenji', 'Priya', 'Lucas', 'Emma']
def who():
    return R.choice(names)

# ---- cards ----
for i in range(30):
    c = card(['visa', 'mc', 'amex'][i % 3])
    shown = group(c, [4, 6, 5]) if len(c) == 15 and i % 2 else (group(c, [4, 4, 4, 4], R.choice(' -')) if len(c) == 16 and i % 2 else c)
    add('valid', 'card', R.choice(['Please charge card %s for the order.', '%s was declined yesterday.', 'Use my card: %s, expiry 09/27.']) % shown)
    add('near', '-', 'Card %s came back as invalid.' % wrong_last(c, luhn_ok))
# ---- IBAN ----
for i in range(30):
    cc = list(IBAN_BBAN)[i % len(IBAN_BBAN)]
    v = iban(cc)
    shown = ' '.join(v[k:k+4] for k in range(0, len(v), 4)) if i % 2 else v
    add('valid', 'iban', R.choice(['Wire the fee to %s by Friday.', 'IBAN: %s', '%s is the account of %s.' % ('%s', who())]) % shown)
    bad = v[:2] + '%02d' % ((int(v[2:4]) + 1 + R.randrange(90)) % 97 + 2) + v[4:]
    if to_mod97(bad[4:] + bad[:4]) == 1:
        continue
    add('near', '-', 'The transfer to %s bounced.' % bad)
# ---- Aadhaar ----
for i in range(30):
    while True:
        body = str(R.randrange(2, 10)) + ''.join(R.choice(string.digits) for _ in range(10))
        n = body + verhoeff_digit(body)
        if not mynum_ok(n):
            break
    add('valid', 'in_aadhaar', R.choice(['Aadhaar %s, issued in Pune.', 'My UID is %s.', 'Verify %s before onboarding.']) % (group(n, [4, 4, 4]) if i % 2 else n))
    add('near', '-', 'Aadhaar %s failed the check.' % group(wrong_last(n, NUMERIC12.__call__), [4, 4, 4]))
# ---- My Number ----
for i in range(30):
    while True:
        body = ''.join(R.choice(string.digits) for _ in range(11))
        n = body + mynum_digit(body)
        if not aadhaar_ok(n):
            break
    add('valid', 'jp_my_number', R.choice(['My Number: %s', '%sさんの個人番号は %s です。' % (who(), '%s'), 'individual number %s on file']) % (group(n, [4, 4, 4]) if i % 2 else n))
    add('near', '-', 'The number %s was rejected.' % wrong_last(n, NUMERIC12.__call__))
# ---- NIR ----
for i in range(25):
    n = nir()
    shown = group(n, [1, 2, 2, 2, 3, 3, 2]) if i % 2 else n
    add('valid', 'fr_nir', R.choice(['Numéro de sécurité sociale : %s', 'NIR %s (carte Vitale)', 'Patient %s admitted.' % '%s']) % shown)
    def nir_ok(s):
        num = int(s[:13].replace('2A', '19').replace('2B', '18'))
        return 97 - num % 97 == int(s[13:])
    add('near', '-', 'NIR %s does not match its key.' % group(wrong_last(n, nir_ok), [1, 2, 2, 2, 3, 3, 2]))
# ---- German tax ID ----
for i in range(25):
    n = de_tax_id()
    add('valid', 'de_tax_id', R.choice(['Steuer-IdNr. %s', 'Meine Steuer-ID lautet %s.', 'tax id %s for the payroll']) % (group(n, [2, 3, 3, 3]) if i % 2 else n))
    add('near', '-', 'Steuer-IdNr. %s ist ungültig.' % wrong_last(n, lambda s: mod11_10_digit(s[:10]) == s[10]))
# ---- US SSN ----
for i in range(25):
    n = ssn()
    add('valid', 'us_ssn', R.choice(['SSN %s', 'Social security number: %s.', '%s (employee record)']) % group(n, [3, 2, 4], R.choice('- ')))
    area = R.choice(['000', '666', '9%02d' % R.randrange(100)])
    add('near', '-', 'Not a real SSN: %s-%s-%s.' % (area, n[3:5], n[5:]))
for i in range(5):
    add('valid', 'us_ssn', 'His SSN is %s.' % ssn())
# ---- UK NINO ----
for i in range(25):
    n = nino()
    add('valid', 'uk_nino', R.choice(['National Insurance number %s.', 'NINO: %s', 'Her NI number is %s']) % (group(n, [2, 2, 2, 2, 1]) if i % 2 else n))
    bad = R.choice(['D', 'F', 'I', 'Q', 'U', 'V']) + n[1:] if i % 3 else R.choice(['BG', 'GB', 'NK', 'TN', 'ZZ']) + n[2:]
    add('near', '-', 'Reference %s is not issued.' % bad)
# ---- EU VAT ----
for i, cc in enumerate(['DE', 'FR', 'IT', 'BE', 'NL', 'AT', 'PL', 'DK', 'FI', 'SE', 'PT', 'LU'] * 3):
    v = vat(cc)
    add('valid', 'eu_vat', R.choice(['VAT number %s.', 'Invoice to Acme GmbH, USt-IdNr. %s', 'Our VAT ID: %s']) % v)
    k = 10 if cc == 'NL' else len(v) - 1  # the check digit (NL: before the B suffix)
    bad = v[:k] + str((int(v[k]) + 1 + R.randrange(8)) % 10) + v[k+1:]
    add('near', '-', 'VAT %s rejected by VIES.' % bad)
# ---- e-mail ----
users = ['john.doe', 'a.b-c', 'priya+news', 'k_tanaka', 'ops', 'lena.m.schmidt', 'x1', 'first.last']
domains = ['example.com', 'mail.example.org', 'uni-heidelberg.de', 'gov.uk', 'co.jp', 'example.fr']
for i in range(30):
    e = R.choice(users) + '@' + R.choice(domains)
    add('valid', 'email', R.choice(['Write to %s.', 'cc: %s', '<%s> replied', 'Contact: %s for access']) % e)
for t in ['john@localhost', 'a@b', 'user@@example.com', '@handle on the forum', 'email me at name at example dot com', 'foo@bar.123']:
    add('near', '-', 'Not an address: %s' % t)
# ---- phones ----
for t in ['+44 20 7946 0958', '+1 (555) 010-4477', '+81 3-1234-5678', '+49 30 901820', '+33 1 42 68 53 00', '+91 98765 43210', '+4915123456789',
          '(555) 234-5678', '555-867-5309', '212.555.0199', '1-800-555-0199', '020 7946 0958', '030 1234 5678', '01 42 68 53 00', '03-1234-5678', '090-1234-5678', '98765 43210',
          '+61 2 9374 4000', '+86 10 6552 9988', '(030) 901820-0', '07700 900123', '06 12 34 56 78', '+353 1 234 5678', '+27 21 123 4567', '415-555-2671']:
    add('valid', 'phone', R.choice(['Call me on %s tomorrow.', 'Tel. %s', 'phone: %s (office)']) % t)
for t in ['12345', '2024-05-17', '10:45', '1,234,567', '3.14159', '555-1234']:
    add('near', '-', 'Not a phone: %s' % t)
# ---- IP addresses ----
for i in range(20):
    ip = '%d.%d.%d.%d' % (R.randrange(1, 224), R.randrange(256), R.randrange(256), R.randrange(1, 255))
    add('valid', 'ipv4', R.choice(['The server at %s is down.', 'ssh admin@ -p 22 %s', 'blocked %s after 5 failures']) % ip)
for t in ['2001:db8::8a2e:370:7334', 'fe80::1ff:fe23:4567:890a', '::1', '2001:0db8:0000:0000:0000:ff00:0042:8329', '::ffff:192.0.2.128', '2001:db8:85a3::8a2e:370:7334', 'fd12:3456:789a:1::1']:
    add('valid', 'ipv6', 'Listening on %s port 443.' % t)
for t in ['256.10.10.10', '10.0.0', '1.2.3.04', '2001:db8:::1', '12:30:45', 'fe80:::', 'std::vector']:
    add('near', '-', 'Not an address: %s here' % t)
# ---- secrets ----
def rnd(n, alphabet=string.ascii_letters + string.digits):
    while True:
        s = ''.join(R.choice(alphabet) for _ in range(n))
        if sum(c.isdigit() for c in s) >= 2 and sum(c.isalpha() for c in s) >= 2:
            return s
for i in range(6):
    add('valid', 'api_key', 'aws_access_key_id = AKIA%s' % ''.join(R.choice(string.ascii_uppercase + string.digits) for _ in range(16)))
    add('valid', 'api_key', 'export GITHUB_TOKEN=ghp_%s' % rnd(36))
    add('valid', 'api_key', 'OPENAI_API_KEY="sk-proj-%s"' % rnd(40, string.ascii_letters + string.digits + '_-'))
    add('valid', 'api_key', 'stripe key sk_live_%s in the config' % rnd(24))
    add('valid', 'api_key', 'maps key AIza%s' % rnd(35, string.ascii_letters + string.digits + '_-'))
    add('valid', 'api_key', 'token glpat-%s' % rnd(20, string.ascii_letters + string.digits + '_-'))
for i in range(5):
    add('valid', 'private_key', '-----BEGIN %sPRIVATE KEY-----%s-----END %sPRIVATE KEY-----' % (['RSA ', 'EC ', 'OPENSSH ', '', 'ENCRYPTED '][i], rnd(64, string.ascii_letters + string.digits + '+/'), ['RSA ', 'EC ', 'OPENSSH ', '', 'ENCRYPTED '][i]))
for i in range(10):
    add('valid', 'secret_token', 'session secret: %s' % rnd(R.randrange(32, 64), string.ascii_letters + string.digits + '+/'))
for t in ['AKIA1234', 'ghp_short', 'sk-learn is a library', '-----BEGIN PUBLIC KEY-----', '-----BEGIN CERTIFICATE-----', 'task-force', 'desk-lamp-2000-model-x']:
    add('near', '-', 'Not a secret: %s' % t)
# ---- keywords (the test passes BLUEBIRD folded, CONFIDENTIAL and TOP SECRET exact) ----
for t in ['Project Bluebird ships in May.', 'BLUEBIRD: phase two budget', 'This memo is CONFIDENTIAL.', 'TOP SECRET // do not forward']:
    add('valid', 'keyword', t)
for t in ['A bluebirdish colour.', 'The confidential tone of the letter.', 'a top secret recipe (lower case)']:
    add('near', '-', t)
# ---- several in one line ----
add('valid', 'email,phone,card', 'Reach %s at a.k@example.com or +44 20 7946 0958; card %s.' % (who(), card('visa')))
add('valid', 'iban,eu_vat', 'Pay %s, VAT %s.' % (iban('DE'), vat('DE')))
add('valid', 'ipv4,api_key', 'host 10.20.30.40 key AKIA%s' % ''.join(R.choice(string.ascii_uppercase + string.digits) for _ in range(16)))
# ---- ordinary text ----
plain = '''The meeting moved to 14:30 on 2024-03-18 in room 4.12.
Revenue grew 12.5% to EUR 1,234,567 in the third quarter.
Version 2.4.1 fixes the crash reported in issue #4821.
Order 778812 ships in 3-5 business days.
The population of Lyon is about 522,000.
Set max_tokens to 256 and temperature to 0.7.
ISBN 978-3-16-148410-0 is on the reading list.
Flight LH 441 departs at 07:55 from gate B22.
Postcode SW1A 1AA is Downing Street.
Run pip install numpy==1.26.4 before the notebook.
Room temperature was 21.5 degrees at 09:00.
She ran 10 km in 52:14, a personal best.
The invoice total is $4,210.99 including tax.
Use git checkout -b feature/login-form to start.
The recipe needs 250 g flour, 2 eggs and 100 ml milk.
Call the function with (x, y) = (3, 4).
Matrix dimensions: 2048 x 5632, 22 layers.
Train 12 epochs at a learning rate of 3e-4.
Chapter 11 begins on page 347.
The year 1989 changed Berlin.
Latitude 48.8566, longitude 2.3522.
Press Ctrl+Alt+Delete to restart.
The model has 1.1B parameters and 32 heads.
Tickets cost 45 euros, or 30 for students.
Your reference is ABC-2024-0042.
In 2023 the firm hired 1,250 people across 14 countries.
We measured 5.2 ms p99 latency at 800 req/s.
The patient is 67 years old and weighs 82 kg.
Line 1042 of parser.c dereferences a null pointer.
Use port 8080 for HTTP and 8443 for TLS.
A 4K monitor has 3840 x 2160 pixels.
Please reply by the 15th of May.
The serial port runs at 115200 baud.
Her flight number was BA 2490, seat 23C.
The bill passed 312 to 104.
Dial extension 4417 for support.
In Python, range(10) yields 0 to 9.
The URL is https://example.org/docs/getting-started/install.
See https://example.com/a/b/some-resource-name-2024 for details.
C++ code: std::vector<int> v; v.push_back(42);
The hash map uses open addressing with linear probing.
Read /usr/share/doc/README.Debian for packaging notes.
The GDP per capita is 45,000 dollars.
Maintenance window: Saturday 02:00-04:00 UTC.
The train leaves platform 9 at 10:15.
Temperature sensors report every 30 s.
Our office is at 221B Baker Street, London.
The building has 27 floors and 4 lifts.
Coordinates 51.5007, -0.1246 mark the clock tower.
Test case 17 of 250 failed with exit code 139.
Sum of 123456 and 654321 is 777777.
Memory: 24 GiB, 2 cores, Debian 12.
Shoe size 42, height 180 cm.
The lottery numbers were 4, 8, 15, 16, 23 and 42.
The contract runs from 01.01.2025 to 31.12.2027.
Catalogue number 1234-5678-90 is out of stock.
Product code 0000-0000-0000-0000 is a placeholder.
Build 20241122.3 passed all checks.
The prime 2147483647 fits in 32 bits.
The dataset holds 60000 training images of 28 x 28 pixels.
Her essay scored 92 out of 100.
The variable name is userAccountSettingsByIdentifier.
The CSS colour #ff8800 is orange.
Function getUserProfileSettingsForAccount returns a struct.
The exam starts at 9 and ends at 12.
My grandmother was born in 1931 in Kyoto.
Budget line 4.3.2 covers travel.
Rust path: std::collections::HashMap.
The speed limit is 130 km/h on the Autobahn.
A kilobyte is 1024 bytes in this document.
Gate code 4590, then the second door.
Meeting ID 845 2291 7763 for the call.
The package weighs 2.5 kg and measures 30 x 20 x 10 cm.
The factorial of 10 is 3628800.
Use UTF-8 everywhere, and NFC for comparisons.
Python 3.11.2 and GCC 12.2.0 are installed.
They sold 15,000 copies in the first week.
The API returns 429 when the queue is full.
The cluster has 3 nodes with 64 GB each.
Grades: A (90-100), B (80-89), C (70-79).
The SKU is TSHIRT-BLUE-L-2024.
Call me at five, not at noon.
Room 101 is on the first floor.
The answer is 42.
Kubernetes 1.29 ships with containerd 1.7.
Invoice INV-2024-000123 is overdue.
PIN length must be 4 to 8 digits.
The CPU runs at 3.3 GHz with 32 MB of L3.
Our Q3 target is 2,500 units.
He lives at 1600 Pennsylvania Avenue.
The recipe serves 4 and takes 35 minutes.
The bug was introduced in commit message "fix typo".
She scored 3 goals in 2 matches.
Population density: 4,500 per square km.
We rented bikes 12 and 13 for the afternoon.
The lecture is in hall H 0104.
Model TinyLlama-1.1B-Chat-v1.0 is on the list.
File size: 638 MB after quantization.
A tax rate of 19% applies in Germany.
Send the report to the team by Friday.
The secret to good bread is patience.
Confidentiality matters to our customers.'''
for t in plain.split('\n'):
    add('plain', '-', t)


# ---- evasion: the value as the model still reads it, spelled to dodge a byte matcher ----
# Each trick is applied to a valid value (kind "evasion": it must still be
# found) and to its near miss (kind "near": it must still not be).
ZW = ['\u200b', '\u00ad', '\u2060', '\u200d', '\ufeff', '\u202e']  # zero-width, soft hyphen, joiners, BOM, bidi
HOMO = {'A': '\u0410', 'B': '\u0412', 'E': '\u0415', 'K': '\u041a', 'M': '\u041c', 'H': '\u041d',
        'O': '\u041e', 'P': '\u0420', 'C': '\u0421', 'T': '\u0422', 'X': '\u0425',
        'a': '\u0430', 'e': '\u0435', 'o': '\u043e', 'p': '\u0440', 'c': '\u0441', 'x': '\u0445'}

def invisible(v):
    i = R.randrange(1, len(v))
    return v[:i] + R.choice(ZW) + v[i:]

def fullwidth(v):
    return ''.join(chr(ord(c) + 0xFEE0) if '!' <= c <= '~' else c for c in v)

def digits_in(v, zero):
    return ''.join(chr(zero + int(c)) if c.isdigit() else c for c in v)

def arabic(v):
    return digits_in(v, 0x0660)

def devanagari(v):
    return digits_in(v, 0x0966)

def math_bold(v):
    return ''.join(chr(0x1D7CE + int(c)) if c.isdigit() else c for c in v)

def nbsp(v):
    return v.replace(' ', '\u00a0')

def cyrillic(v):
    idx = [i for i, c in enumerate(v) if c in HOMO]
    if not idx:
        return None
    i = R.choice(idx)
    return v[:i] + HOMO[v[i]] + v[i+1:]

NUMERIC = [invisible, fullwidth, arabic, devanagari, math_bold]
LETTERED = [invisible, fullwidth, cyrillic]

def evade(cls, value, near, tricks, frame):
    for t in tricks:
        e = t(value)
        if e is None or e == value:
            continue
        add('evasion', cls, frame % e)
        if near is not None:
            n = t(near)
            if n is not None and n != near:
                add('near', '-', frame % n)

for i in range(3):
    c = card(['visa', 'mc', 'amex'][i])
    g = group(c, [4, 4, 4, 4]) if len(c) == 16 else group(c, [4, 6, 5])
    bad = wrong_last(c, luhn_ok)
    evade('card', g, group(bad, [4, 4, 4, 4]) if len(bad) == 16 else group(bad, [4, 6, 5]), NUMERIC + [nbsp], 'Charge card %s today.')
    add('evasion', 'card', 'Charge card %s today.' % (group(c, [4, 4, 4, 4], '.') if len(c) == 16 else group(c, [4, 6, 5], '.')))
    add('near', '-', 'Charge card %s today.' % (group(bad, [4, 4, 4, 4], '.') if len(bad) == 16 else group(bad, [4, 6, 5], '.')))
for cc in ['DE', 'FR', 'GB']:
    v = iban(cc)
    g = ' '.join(v[k:k+4] for k in range(0, len(v), 4))
    bad = v[:2] + '%02d' % ((int(v[2:4]) + 1) % 97 + 2) + v[4:]
    if to_mod97(bad[4:] + bad[:4]) == 1:
        bad = None
    evade('iban', v, bad, LETTERED + [arabic], 'Wire it to %s please.')
    add('evasion', 'iban', 'Wire it to %s please.' % g.lower())
    add('evasion', 'iban', 'Wire it to %s please.' % v.lower())
    if bad:
        add('near', '-', 'Wire it to %s please.' % bad.lower())
for i in range(2):
    while True:
        body = str(R.randrange(2, 10)) + ''.join(R.choice(string.digits) for _ in range(10))
        n = body + verhoeff_digit(body)
        if not mynum_ok(n):
            break
    evade('in_aadhaar', group(n, [4, 4, 4]), group(wrong_last(n, NUMERIC12.__call__), [4, 4, 4]), NUMERIC + [nbsp], 'Aadhaar %s on file.')
for i in range(2):
    while True:
        body = ''.join(R.choice(string.digits) for _ in range(11))
        n = body + mynum_digit(body)
        if not aadhaar_ok(n):
            break
    evade('jp_my_number', n, wrong_last(n, NUMERIC12.__call__), NUMERIC, 'My Number: %s')
for i in range(2):
    n = nir()
    def nir_ok2(s):
        num = int(s[:13].replace('2A', '19').replace('2B', '18'))
        return 97 - num % 97 == int(s[13:])
    evade('fr_nir', n, wrong_last(n, nir_ok2), NUMERIC, 'NIR %s (carte Vitale)')
for i in range(2):
    n = de_tax_id()
    evade('de_tax_id', n, wrong_last(n, lambda s: mod11_10_digit(s[:10]) == s[10]), NUMERIC, 'Steuer-IdNr. %s')
for i in range(2):
    n = ssn()
    evade('us_ssn', group(n, [3, 2, 4], '-'), '666-%s-%s' % (n[3:5], n[5:]), NUMERIC, 'SSN %s')
for i in range(2):
    n = nino()
    evade('uk_nino', n, 'Q' + n[1:], LETTERED + [arabic], 'NINO: %s')
for cc in ['DE', 'FR']:
    v = vat(cc)
    k = len(v) - 1
    evade('eu_vat', v, v[:k] + str((int(v[k]) + 1) % 10) + v[k+1:], LETTERED + [arabic], 'USt-IdNr. %s')
for e in ['john.doe@example.com', 'priya+news@mail.example.org']:
    evade('email', e, None, LETTERED, 'Write to %s today.')
for t in ['+44 20 7946 0958', '555-867-5309']:
    evade('phone', t, None, NUMERIC, 'Call me on %s tomorrow.')
for ip in ['192.168.10.20', '10.1.2.3']:
    evade('ipv4', ip, None, NUMERIC, 'The server at %s is down.')
for k in ['AKIA' + ''.join(R.choice(string.ascii_uppercase + string.digits) for _ in range(16)), 'ghp_' + rnd(36)]:
    evade('api_key', k, None, [invisible, fullwidth], 'key = %s')
for kw in ['BLUEBIRD', 'Bluebird']:
    evade('keyword', kw, None, LETTERED, 'Project %s ships in May.')
evade('keyword', 'CONFIDENTIAL', None, LETTERED, 'This memo is %s.')

print('# labelled corpus for the detectors; generated by gen_detect_corpus.py (do not edit by hand)')
for l in lines:
    print(l)
