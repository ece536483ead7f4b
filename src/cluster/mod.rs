//! Remote clusters (issue 23, groundwork): what ferry accepts as the credentials of a cluster it
//! does not run in. Nothing here is wired to the sync engine yet; `kubeconfig` is the check every
//! remote cluster's kubeconfig Secret will go through before ferry connects.

pub mod kubeconfig;
