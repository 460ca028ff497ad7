//! `mysqk doctor`: can mysqk do its job on every instance?
