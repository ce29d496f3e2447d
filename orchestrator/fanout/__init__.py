"""One night spread over CI jobs: the plan and job files, the CI
files for GitHub Actions and GitLab, and moving kernels and kept results
between runners. Imports reports, nightly and below."""
