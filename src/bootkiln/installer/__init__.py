"""The EC2 installer's own code: its user-data document, the Puppet PKI, and a fake metadata service."""
