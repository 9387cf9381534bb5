"""Publishing to AWS: EBS direct-API snapshot upload, AMI registration, S3, EC2 launch and Route53.

Nothing is imported here, so reading a profile (config imports aws.settings) never loads boto3.
"""
