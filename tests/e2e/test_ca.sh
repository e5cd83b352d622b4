# Sourced by the TLS e2e scripts (tls.sh, netns.sh): a throwaway CA and
# server certificates it signs, made with openssl in the current directory.
#   mkca NAME            NAME.key, NAME.pem: a self-signed CA
#   mkcert NAME CA SAN   NAME.key, NAME.pem signed by CA for SAN ("DNS:x,IP:y")
mkca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=dnnpress test $1" -keyout "$1.key" -out "$1.pem" 2> /dev/null
}
mkcert() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$1.key" -out "$1.csr" 2> /dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.pem" 2> /dev/null
}
